"""Which samples enter an update: DAPO's dynamic sampling and LUFFY's off-policy group mixing."""

from __future__ import annotations

import torch


def informative_groups(rewards: torch.Tensor, group: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """bool (N,): True for samples whose group's rewards are NOT all equal (DAPO dynamic sampling keeps
    only these: a group of all successes or all failures has zero advantage and only dilutes the batch).
    rewards float (N,), group int64 (N,)."""
    _, inv = torch.unique(group, return_inverse=True)
    g = int(inv.max()) + 1 if inv.numel() else 0
    big = torch.finfo(torch.float64).max
    r = rewards.double()
    lo = torch.full((g,), big, dtype=torch.float64).scatter_reduce(0, inv, r, "amin")
    hi = torch.full((g,), -big, dtype=torch.float64).scatter_reduce(0, inv, r, "amax")
    return (hi - lo)[inv] > tol


def mix_off_policy(group: torch.Tensor, off_group: torch.Tensor,
                   n_off_per_group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """LUFFY group construction: each group's on-policy rollouts are joined by up to ``n_off_per_group``
    off-policy samples of the same prompt (e.g. a demonstration). Returns the indices of the chosen
    off-policy samples (into ``off_group``) and the concatenated group ids ``(N_on + N_off_chosen,)``.
    Groups without an off-policy sample stay purely on-policy. group (N_on,), off_group (N_off,)."""
    chosen = []
    present = set(group.tolist())
    seen: dict[int, int] = {}
    for i, g in enumerate(off_group.tolist()):
        if g in present and seen.get(g, 0) < n_off_per_group:
            chosen.append(i)
            seen[g] = seen.get(g, 0) + 1
    idx = torch.tensor(chosen, dtype=torch.long)
    return idx, torch.cat([group, off_group[idx]])

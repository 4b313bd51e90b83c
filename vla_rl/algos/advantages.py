"""Group-relative outcome advantages. Vectorised with scatter-adds; `tests/vla_rl/algos` holds the
plain-loop references they are checked against."""

from __future__ import annotations

import torch

from vla_rl.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator")


def group_stats(rewards: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample group size, group mean and unbiased group std (float64). rewards float (N,), group int64 (N,)."""
    _, inv = torch.unique(group, return_inverse=True)
    g = int(inv.max()) + 1 if inv.numel() else 0
    r = rewards.double()
    count = torch.zeros(g, dtype=torch.float64, device=r.device).index_add_(0, inv, torch.ones_like(r))
    total = torch.zeros(g, dtype=torch.float64, device=r.device).index_add_(0, inv, r)
    mean = total / count
    sq = torch.zeros(g, dtype=torch.float64, device=r.device).index_add_(0, inv, (r - mean[inv]) ** 2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    return count[inv], mean[inv], std[inv]


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: torch.Tensor, group: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO (DeepSeekMath): ``(r - mean_g) / (std_g + eps)``, std unbiased as torch.std (veRL does the
    same). A group of one gets 0. rewards (N,), group (N,) -> advantages float32 (N,)."""
    count, mean, std = group_stats(rewards, group)
    adv = (rewards.double() - mean) / (std + eps)
    return torch.where(count > 1, adv, torch.zeros_like(adv)).float()


@ADVANTAGES.register("drgrpo")
def drgrpo_advantages(rewards: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): ``r - mean_g``, no std division
    (which over-weights groups of near-equal rewards). A group of one gets 0. (N,) -> (N,)."""
    count, mean, _ = group_stats(rewards, group)
    adv = rewards.double() - mean
    return torch.where(count > 1, adv, torch.zeros_like(adv)).float()


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): reward minus the mean of the OTHER samples of its group,
    ``(n r_i - sum_g) / (n - 1)``. A group of one gets 0. (N,) -> (N,)."""
    count, mean, _ = group_stats(rewards, group)
    adv = (rewards.double() - mean) * count / (count - 1).clamp(min=1)
    return torch.where(count > 1, adv, torch.zeros_like(adv)).float()


def compute_advantages(name: str, rewards: torch.Tensor, group: torch.Tensor, **kwargs: float) -> torch.Tensor:
    """Look up ``name`` in `ADVANTAGES` and apply it."""
    return ADVANTAGES.get(name)(rewards, group, **kwargs)


def sample_advantages(adv_traj: torch.Tensor, traj: torch.Tensor,
                      equal_trajectory_weight: bool = False) -> torch.Tensor:
    """Each sample (a policy call: one action chunk, or one text completion) takes its trajectory's advantage.

    With ``equal_trajectory_weight`` the advantage is also scaled by (mean samples per trajectory) / (samples
    of its trajectory), so under a token-mean loss every trajectory carries the same total weight: failed robot
    episodes run to the step limit and would otherwise outweigh the short successful ones several times.
    adv_traj float (N,), traj int64 (S,) -> float (S,).
    """
    adv = adv_traj[traj]
    if not equal_trajectory_weight:
        return adv
    length = torch.bincount(traj, minlength=len(adv_traj)).float()
    return adv * (length[length > 0].mean() / length.clamp(min=1))[traj]

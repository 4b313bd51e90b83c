"""The shared rollout mechanics: selecting trajectories and joining rounds, checked field by field."""

from dataclasses import dataclass

import torch

from vla_rl.rollout.base import Rollout, per_sample, per_trajectory


@dataclass
class Toy(Rollout):
    tokens: torch.Tensor = per_sample(pad="right")
    prompt: torch.Tensor = per_sample(pad="left")
    traj: torch.Tensor = per_sample()
    group: torch.Tensor = per_trajectory()
    names: list[str] = per_trajectory(list)
    wall_s: float = 0.0
    flag: torch.Tensor | None = per_trajectory(fill=lambda n: torch.zeros(n, dtype=torch.bool))

    def counts(self):
        return {}

    def batch(self, idx):
        return self.prompt[idx]


def toy(n_traj: int, width: int, base: int, flag: bool = False) -> Toy:
    traj = torch.arange(n_traj).repeat_interleave(2)  # two samples per trajectory
    s = len(traj)
    return Toy(tokens=torch.arange(s * width).view(s, width) + base, prompt=torch.ones(s, width, dtype=torch.long),
               traj=traj, group=torch.arange(n_traj) // 2 + base, names=[f"{base}-{i}" for i in range(n_traj)],
               wall_s=1.5, flag=torch.ones(n_traj, dtype=torch.bool) if flag else None)


def test_select_keeps_samples_of_kept_trajectories_and_renumbers():
    r = toy(4, 3, 0)
    keep = torch.tensor([True, False, False, True])
    out = r.select_trajectories(keep)
    assert out.traj.tolist() == [0, 0, 1, 1] and out.names == ["0-0", "0-3"]
    assert torch.equal(out.tokens, r.tokens[[0, 1, 6, 7]]) and out.group.tolist() == [0, 1]
    assert out.num_samples == 4 and out.wall_s == 1.5 and out.flag is None


def test_concat_offsets_trajectories_pads_and_fills():
    a, b = toy(2, 3, 0), toy(2, 5, 100, flag=True)
    out = Toy.concat([a, b])
    assert out.traj.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert out.tokens.shape == (8, 5) and torch.equal(out.tokens[:4, :3], a.tokens)
    assert (out.tokens[:4, 3:] == 0).all()  # right-padded
    assert (out.prompt[:4, :2] == 0).all() and (out.prompt[:4, 2:] == 1).all()  # left-padded
    assert out.flag.tolist() == [False, False, True, True] and out.names[-1] == "100-1" and out.wall_s == 3.0

"""The data-parallel learner on this machine: seconds of one GRPO update (`GRPOTrainer.update`) with 1 and 2 gloo
ranks (`vla_rl.distributed.learner`) on the same global batch, for the micro VLA of the tests and the quickstart's
tiny VLA; the 1-rank figure is the baseline of the same run. -> bench/results/data_parallel.json

    python -m bench.data_parallel_bench [samples=64] [minibatch=32] [repeats=2]

The rollout is synthetic (random images, the policy's own sampled action tokens, mixed outcomes): the update's
cost does not depend on where the samples came from. Also the helpers of tests/distributed/test_learner.py.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_rl.distributed.learner import DataParallel, run_data_parallel
from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig, vla_preset
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.rollout.robot import RobotRollout
from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer, RobotBackend

RESULTS = Path(__file__).parent / "results" / "data_parallel.json"
TASK = "mujoco/Reach-v1"


def make_policy(size: str) -> VLAPolicy:
    """``micro`` (the tests' `tiny_vla`: 32 px, width 32, one layer each) or ``tiny`` (the quickstart's), seeded."""
    from vla_rl.policies.tokenizer import build_tokenizer
    from vla_rl.policies.vla.processor_vla import NormStats
    from vla_rl.trainers.sft import all_instructions

    torch.manual_seed(0)
    cfg = vla_preset("tiny") if size == "tiny" else VLAConfig(
        vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                            intermediate_size=64),
        lm=LMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), chunk_size=4)
    tok = build_tokenizer(all_instructions(), vocab_size=300)
    return VLAPolicy(cfg, len(tok), NormStats(-np.ones(7), np.ones(7)), NormStats(-np.ones(8), np.ones(8)),
                     tokenizer=tok)


def synthetic_rollout(policy: VLAPolicy, trajectories: int = 8, steps: int = 4, group_size: int = 4,
                      seed: int = 0) -> RobotRollout:
    """``trajectories`` x ``steps`` samples: random images and proprio, the policy's sampled tokens with their
    log-probs (nudged by noise, so PPO's ratio clip acts from the first step), token masks of 1 to chunk_size
    executed steps (varied token counts: token-mean and sequence means differ), every other trajectory a success."""
    g = torch.Generator().manual_seed(seed)
    c, s = policy.config, trajectories * steps
    images = torch.randint(0, 256, (s, len(c.cameras), 3, c.vision.image_size, c.vision.image_size),
                           generator=g, dtype=torch.uint8)
    proc = policy.processor()
    batch = proc.batch(images, ["reach the red target"] * s, torch.rand(s, c.state_dim, generator=g).numpy() * 2 - 1)
    out = policy.eval().act(batch, temperature=1.0, generator=g)
    k = out.tokens.shape[1]
    executed = torch.randint(1, c.chunk_size + 1, (s,), generator=g) * (k // c.chunk_size)
    mask = (torch.arange(k)[None] < executed[:, None]).float()
    success = torch.arange(trajectories) % 2 == 0
    n, old_logp = trajectories, out.logprobs + 0.2 * torch.randn(s, k, generator=g)
    return RobotRollout(images=images, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        state=batch.state, tokens=out.tokens, old_logp=old_logp,
                        entropy=out.entropy, token_mask=mask, traj=torch.arange(s) // steps,
                        group=torch.arange(n) // group_size, success=success, lost=torch.zeros(n, dtype=torch.bool),
                        steps=torch.full((n,), steps), seeds=list(range(n)), tasks=[TASK] * n)


class _LearnerBackend(RobotBackend):
    """A learner rank's backend: the policy, no envs (it updates on rollouts collected elsewhere)."""

    def start(self, policy: Any) -> None:
        pass


class LearnerConfig(GRPOConfig):
    """`GRPOConfig` for a rank that only updates."""

    def backend(self) -> RobotBackend:
        return _LearnerBackend(self)


def learner(init: str, out: str, **groups: dict) -> GRPOTrainer:
    """A trainer on checkpoint ``init`` without envs; ``groups``: config groups (loss={...}, optim={...})."""
    cfg = dict(tasks=[TASK], init=init, out=out, threads=1, eval={"episodes": 0}, checkpoint={"overwrite": True},
               sampling={"group_size": 4, "temperature": 1.0}, optim={"epochs": 2, "minibatch_size": 16, "lr": 1e-3})
    for k, v in groups.items():
        cfg[k] = cfg[k] | v if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return GRPOTrainer(LearnerConfig.model_validate(cfg))


def update_once(dp: DataParallel | None, init: str, rollout: str | list[str], out: str, groups: dict,
                die_at_forward: int | None = None) -> dict[str, Any]:
    """One `update` on the saved rollout (a list: one per rank); returns its metrics, the final parameters (flat
    float32) and its wall, CPU and collective seconds. ``die_at_forward``: rank 1 kills itself (SIGKILL) at its
    forward number ``die_at_forward`` (fault injection)."""
    t = learner(init, f"{out}/rank{dp.rank if dp else 0}", **groups)
    try:
        if dp is not None:
            dp.broadcast_parameters(t.policy)
            t.dp = dp
            if die_at_forward is not None and dp.rank == 1:
                _die_at_call(t.policy, die_at_forward)
        r = torch.load(rollout[dp.rank if dp else 0] if isinstance(rollout, list) else rollout, weights_only=False)
        t0, c0, comm0 = time.perf_counter(), time.process_time(), dp.comm_s if dp else 0.0
        metrics = t.update(r)
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        params = torch.cat([p.detach().flatten() for p in t.policy.parameters()])
        return {"metrics": metrics, "params": params, "seconds": seconds, "cpu_s": cpu_s,
                "comm_s": dp.comm_s - comm0 if dp else 0.0}
    finally:
        t.close()


def update_cases(dp: DataParallel | None, init: str, rollout: str, out: str, cases: list[dict]) -> list[dict]:
    """`update_once` for each of ``cases`` (config groups), from ``init`` each time."""
    return [update_once(dp, init, rollout, f"{out}/{i}", groups) for i, groups in enumerate(cases)]


def _die_at_call(policy: VLAPolicy, n: int) -> None:
    forward, calls = policy.logprobs, [0]

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return forward(*args, **kwargs)

    policy.logprobs = dying  # type: ignore[method-assign]


def _timed_updates(dp: DataParallel | None, init: str, rollout: str, out: str, repeats: int, minibatch: int,
                   threads: int = 1) -> list[tuple[float, float, float]]:
    """(wall, CPU, collective) seconds of ``repeats`` updates."""
    groups = {"optim": {"minibatch_size": minibatch}, "threads": threads}
    runs = [update_once(dp, init, rollout, f"{out}/{i}", groups) for i in range(repeats)]
    return [(u["seconds"], u["cpu_s"], u["comm_s"]) for u in runs]


def main(samples: int = 64, minibatch: int = 32, repeats: int = 2) -> dict[str, Any]:
    import tempfile

    torch.set_num_threads(1)
    res: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                           "samples": samples, "minibatch_size": minibatch, "epochs": 2, "threads_per_rank": 1,
                           "timing": "seconds of GRPOTrainer.update alone (trainer start-up and process spawn "
                                     "excluded), best of repeats; 2 ranks: the slower rank. Wall seconds mean "
                                     "something only while the load average stays below the cores; CPU seconds "
                                     "per rank show the split of the work whatever the load",
                           "repeats": repeats, "load_average_1min_at_start": round(os.getloadavg()[0], 2),
                           "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("micro", "tiny"):
            policy = make_policy(size)
            init, rollout = f"{tmp}/{size}", f"{tmp}/{size}.pt"
            policy.save_pretrained(init)
            torch.save(synthetic_rollout(policy, trajectories=samples // 4, steps=4), rollout)
            one = min(_timed_updates(None, init, rollout, f"{tmp}/{size}-1", repeats, minibatch))
            one_2t = min(_timed_updates(None, init, rollout, f"{tmp}/{size}-1t2", repeats, minibatch, 2))
            ranks = run_data_parallel(_timed_updates, 2, init, rollout, f"{tmp}/{size}-2", repeats, minibatch)
            two = min((max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2])) for a, b in zip(*ranks, strict=True))
            res["sizes"][size] = {"params": sum(p.numel() for p in policy.parameters()),
                                  **{f"{k}_wall_s": round(v[0], 3) for k, v in
                                     (("1_rank", one), ("1_rank_2_threads", one_2t), ("2_ranks", two))},
                                  **{f"{k}_cpu_s": round(v[1], 3) for k, v in (("1_rank", one), ("2_ranks", two))},
                                  "2_ranks_collectives_s": round(two[2], 3),
                                  "wall_speedup_vs_1_rank": round(one[0] / two[0], 2)}
            print(size, res["sizes"][size], flush=True)
    res["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main(**{k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])})

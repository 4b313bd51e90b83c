"""Learner ranks as Ray actors on a simulated two-node cluster: 2 ranks end an update with the parameters of one
process on the same global batch; a GRPO run with 2 learner ranks equals one with the update in the driver; a learner
actor killed mid-update is retried on fresh actors (counted) and ends where an undisturbed run ends; a driver
SIGKILLed mid-run resumes to the parameters of an uninterrupted run; stale weights are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from bench.data_parallel_bench import synthetic_rollout  # noqa: E402
from tests.vla_rl.distributed.ray_cluster import two_node_cluster  # noqa: E402
from vla_rl.distributed.learner_actors import LearnerFailed, LearnerGroup, load_state, state_of  # noqa: E402
from vla_rl.distributed.weights import InferenceWeights, StaleWeights, WeightBoard  # noqa: E402
from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer  # noqa: E402

TASK = "mujoco/Reach-v1"
ROOT = Path(__file__).resolve().parents[3]
LR = 1e-3


@pytest.fixture(scope="module")
def cluster():
    """A head node (where the driver runs) and one worker node, 2 CPUs each."""
    with two_node_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def init(tmp_path_factory, tiny_vla) -> Path:
    path = tmp_path_factory.mktemp("learner") / "init"
    tiny_vla.save_pretrained(path)
    return path


def config(init: Path, out: Path, ranks: int, address: str, iterations: int = 2, **extra) -> GRPOConfig:
    return GRPOConfig.model_validate(dict(
        tasks=[TASK], init=str(init), out=str(out), iterations=iterations, threads=1,
        env={"num_envs": 4, "num_workers": 2}, sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.0},
        optim={"epochs": 2, "minibatch_size": 8, "lr": LR}, eval={"episodes": 0}, checkpoint={"every": 1},
        distributed={"backend": "ray", "address": address, "env_actors": 2, "actor_cpus": 0.5,
                     "learner_ranks": ranks, "learner_cpus": 0.5} | extra))


def params(policy: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def flat(state: dict[str, torch.Tensor], policy: torch.nn.Module) -> torch.Tensor:
    return torch.cat([state[k].flatten() for k, _ in policy.named_parameters()])


class MixedOutcomes(GRPOTrainer):
    """Every other trajectory of each rollout succeeds (a micro policy never does by itself; then the update would
    move nothing), as in the determinism pins."""

    def rollout(self):
        r = super().rollout()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0
        return r


def run(cfg: GRPOConfig, fault=None) -> tuple[torch.Tensor, list[dict], list[int]]:
    """The final parameters, the metrics rows and the learner actors' pids of each iteration."""
    t = MixedOutcomes(cfg)
    pids = []
    try:
        if fault is not None:
            fault(t)
        t.t_start = time.time()
        while t.iteration < cfg.iterations:
            t.step(t.rollout(), 0.0)
            pids.append(list(t.learners.pids) if t.learners else [])
        rows = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        return params(t.policy), rows, pids
    finally:
        t.close()


def close_to_one_process(two: torch.Tensor, one: torch.Tensor, start: torch.Tensor, what: str) -> None:
    """test_learner.py's tolerance: the 2 ranks' update within 1e-3 of the update's norm, every parameter within
    lr / 50 (float32 summation order of the gradient all-reduce, amplified by Adam on near-zero coordinates)."""
    moved = one - start
    assert moved.abs().max() > 3 * LR, f"{what}: the update barely moved the weights"
    diff = two - one
    assert diff.norm() <= 1e-3 * moved.norm(), f"{what}: {diff.norm() / moved.norm():.1e} of the update off"
    assert diff.abs().max() <= LR / 50, f"{what}: a parameter {diff.abs().max():.1e} off"


def test_two_ray_learner_ranks_update_like_one_process_and_a_spent_retry_budget_is_a_clear_error(
        cluster, init, tiny_vla, tmp_path):
    cfg = config(init, tmp_path / "a", 2, cluster.address)
    rollout = synthetic_rollout(tiny_vla, trajectories=8, steps=4)  # 32 samples: 2 epochs of 4 minibatches
    one = GRPOTrainer(cfg, learner_only=True)
    start = params(one.policy)
    group = LearnerGroup(cfg)
    try:
        out = group.update(state_of(one) | {"lr": one.set_lr()}, rollout)
        assert len(set(group.pids)) == 2 and os.getpid() not in group.pids
    finally:
        group.close()
    m = one.update(rollout)
    assert out["metrics"]["actor/updates"] == m["actor/updates"] == 8
    for key in ("loss/pg", "actor/grad_norm", "actor/ppo_kl"):
        assert out["metrics"][key] == pytest.approx(m[key], rel=1e-5, abs=1e-9), key
    close_to_one_process(flat(out["policy"], one.policy), params(one.policy), start, "2 Ray ranks")
    assert torch.equal(out["gen"], one.gen.get_state())  # the same minibatches drawn: the run continues alike
    assert out["opt"]["state"][0]["step"] == one.opt.state_dict()["state"][0]["step"]

    doomed = LearnerGroup(config(init, tmp_path / "a2", 2, cluster.address, learner_retries=1))
    doomed.after_submit = lambda g: ray.kill(g.actors[1], no_restart=True)  # every attempt loses rank 1
    try:
        with pytest.raises(LearnerFailed, match=r"failed on 2 sets of 2 learner actors "
                                                r"\(distributed.learner_retries=1\); last: ActorDiedError"):
            doomed.update(state_of(one) | {"lr": LR}, rollout)
        assert doomed.retries == 1 and not doomed.actors
    finally:
        doomed.close()


def test_sharded_ray_learner_ranks_update_like_one_process_through_the_drivers_state(cluster, init, tiny_vla,
                                                                                     tmp_path):
    """learner_sharding=fsdp: the driver sends its full state (policy, AdamW) to the sharded ranks and loads the full
    state they return, twice; it ends where one process's two updates end."""
    cfg = config(init, tmp_path / "f", 2, cluster.address, learner_sharding="fsdp")
    one, driver = GRPOTrainer(cfg, learner_only=True), GRPOTrainer(cfg, learner_only=True)
    start = params(one.policy)
    group = LearnerGroup(cfg)
    try:
        for seed in (0, 1):
            rollout = synthetic_rollout(tiny_vla, trajectories=8, steps=4, seed=seed)
            out = group.update(state_of(driver) | {"lr": driver.set_lr()}, rollout)
            load_state(driver, out)
            held = ray.get([a.weights_held.remote() for a in group.actors])
            assert held == [pytest.approx(0.5, abs=0.02)] * 2, f"the ranks hold {held} of the weights, not half"
            m = one.update(rollout)
            assert out["metrics"]["actor/updates"] == m["actor/updates"] == 8
            for key in ("loss/pg", "actor/grad_norm", "actor/ppo_kl"):
                assert out["metrics"][key] == pytest.approx(m[key], rel=1e-5, abs=1e-9), key
    finally:
        group.close()
    close_to_one_process(params(driver.policy), params(one.policy), start, "2 sharded Ray ranks")
    assert torch.equal(driver.gen.get_state(), one.gen.get_state())
    mine, theirs = driver.opt.state_dict()["state"], one.opt.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for i, s in theirs.items():
        assert torch.equal(mine[i]["step"], s["step"]) and int(s["step"]) == 16
        torch.testing.assert_close(mine[i]["exp_avg"], s["exp_avg"], rtol=1e-3, atol=1e-7)


@pytest.fixture(scope="module")
def undisturbed(cluster, init, tmp_path_factory):
    """A 2-iteration run with 2 learner ranks, undisturbed: (final parameters, metrics rows, pids)."""
    return run(config(init, tmp_path_factory.mktemp("runs") / "two", 2, cluster.address))


def test_a_grpo_run_with_two_learner_ranks_equals_the_update_in_the_driver(cluster, init, undisturbed, tmp_path):
    in_driver, rows_1, pids_1 = run(config(init, tmp_path / "one", 1, cluster.address))
    two, rows_2, pids_2 = undisturbed
    assert pids_1 == [[], []] and len(set(pids_2[0])) == 2 and pids_2[1] == pids_2[0]  # the actors stay
    start = params(GRPOTrainer(config(init, tmp_path / "s", 1, cluster.address), learner_only=True).policy)
    close_to_one_process(two, in_driver, start, "2 iterations on 2 Ray ranks")
    for r1, r2 in zip(rows_1, rows_2, strict=True):
        assert r1["rollout/samples"] == r2["rollout/samples"] and r1["rollout/success"] == r2["rollout/success"]
        assert r2["actor/grad_norm"] == pytest.approx(r1["actor/grad_norm"], rel=1e-4)
        assert r2["perf/learner_retries"] == 0.0 and "perf/learner_retries" not in r1


def test_a_learner_actor_killed_mid_update_is_retried_and_changes_nothing(cluster, init, undisturbed, tmp_path):
    """The retry re-runs the same update from the same state on the same rollout: parameters bitwise equal."""
    killed = []

    def kill_rank_1_once(trainer) -> None:
        def kill(group) -> None:
            if not killed:
                killed.append(group.pids[1])
                ray.kill(group.actors[1], no_restart=True)  # the update calls are in flight

        trainer.learners.after_submit = kill

    final, rows, pids = run(config(init, tmp_path / "killed", 2, cluster.address), kill_rank_1_once)
    assert [r["perf/learner_retries"] for r in rows] == [1.0, 0.0]
    assert killed[0] not in pids[0]  # fresh actors finished the update
    assert torch.equal(final, undisturbed[0])


DRIVER = """
import sys, time
from pathlib import Path
import torch
from vla_rl import cli
from vla_rl.trainers.grpo import GRPOTrainer

rollout = GRPOTrainer.rollout

def mixed(self):
    if self.iteration == 1:  # iteration 1's state is on disk: wait here to be killed
        Path(sys.argv[3]).write_text("ready")
        time.sleep(600)
    r = rollout(self)
    r.success[:] = torch.arange(len(r.success)) % 2 == 0
    return r

GRPOTrainer.rollout = mixed
sys.exit(cli.main(sys.argv[1:3]))
"""


def test_a_driver_killed_mid_run_resumes_to_the_uninterrupted_parameters(cluster, init, undisturbed, tmp_path):
    cfg = config(init, tmp_path / "driver", 2, cluster.address)
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))
    (tmp_path / "driver.py").write_text(DRIVER)
    marker = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), "train", str(tmp_path / "cfg.yaml"),
                             str(marker)], env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[0].decode()[-3000:] if proc.poll() is not None else "no marker"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(tmp_path / "driver" / "state" / "trainer.pt", weights_only=False)["iteration"] == 1

    resumed_cfg = cfg.model_copy(update={"checkpoint": cfg.checkpoint.model_copy(update={"resume": True})})
    t = MixedOutcomes(resumed_cfg)
    try:
        assert t.iteration == 1 and t.inference.version == 1
        t.inference.version = 0  # as if a publication had been missed
        with pytest.raises(StaleWeights, match="holds weights version 0 but iteration 1's rollouts need version 1"):
            t.rollout()
        t.inference.version = 1
        t.train()
        assert t.iteration == 2 and t.inference.version == 2
        assert torch.equal(params(t.policy), undisturbed[0])
    finally:
        t.close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "driver" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_weights_are_versioned_and_stale_ones_refused(cluster):
    board = WeightBoard()
    held = InferenceWeights(torch.nn.Linear(2, 2), 0, who="an inference actor")
    target = {k: torch.full_like(v, 3.0) for k, v in held.module.state_dict().items()}
    published = board.publish(target, 1)
    with pytest.raises(StaleWeights, match="an inference actor holds weights version 0 but iteration 1's rollouts "
                                           "need version 1 \\(stale\\)"):
        held.require(1)
    held.load(published)
    held.require(1)
    assert torch.equal(held.module.weight, torch.full((2, 2), 3.0))
    with pytest.raises(ValueError, match="weights version 1 published after version 1"):
        board.publish(target, 1)
    with pytest.raises(StaleWeights, match="ahead of the run"):
        held.require(0)


def test_learner_ranks_need_the_ray_backend():
    from vla_rl.distributed.config import DistributedConfig

    with pytest.raises(ValueError, match="learner_ranks=2 runs the ranks as Ray actors: set distributed.backend=ray"):
        DistributedConfig(learner_ranks=2)
    assert DistributedConfig(backend="ray", learner_ranks=2).learner_retries == 2

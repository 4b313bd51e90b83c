"""Learner ranks as Ray actors on a simulated two-node cluster: 2 ranks end an update with the parameters of one
process on the same global batch; a GRPO run with 2 learner ranks equals one with the update in the driver; a learner
actor killed mid-update is retried on fresh actors (counted) and ends where an undisturbed run ends; a driver
SIGKILLed mid-run resumes to the parameters of an uninterrupted run; stale weights are refused. Sharded ranks keeping
their state between updates equal the full state exchange each update (and one process), return a LoRA run's adapters
only, replay the updates since the last checkpoint after a lost rank, and resume from a mid-run checkpoint."""

from __future__ import annotations

import json
import os
import shutil
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
from vla_rl.distributed.learner_actors import (  # noqa: E402
    LearnerFailed,
    LearnerGroup,
    load_state,
    load_trainable,
    state_of,
)
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


def config(init: Path, out: Path, ranks: int, address: str, iterations: int = 2, every: int = 1,
           groups: dict | None = None, **extra) -> GRPOConfig:
    """A run on the cluster; ``every``: checkpoint.every; ``groups``: more config groups (model={...}); ``extra``:
    distributed keys."""
    return GRPOConfig.model_validate(dict(
        tasks=[TASK], init=str(init), out=str(out), iterations=iterations, threads=1,
        env={"num_envs": 4, "num_workers": 2}, sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.0},
        optim={"epochs": 2, "minibatch_size": 8, "lr": LR}, eval={"episodes": 0}, checkpoint={"every": every},
        distributed={"backend": "ray", "address": address, "env_actors": 2, "actor_cpus": 0.5,
                     "learner_ranks": ranks, "learner_cpus": 0.5} | extra) | (groups or {}))


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


def run(cfg: GRPOConfig, fault=None, after_step=None) -> tuple[torch.Tensor, list[dict], list[int]]:
    """The final parameters, the metrics rows and the learner actors' pids of each iteration. ``fault(trainer)``:
    before the first iteration; ``after_step(trainer)``: after each."""
    t = MixedOutcomes(cfg)
    pids = []
    try:
        if fault is not None:
            fault(t)
        t.t_start = time.time()
        while t.iteration < cfg.iterations:
            t.step(t.rollout(), 0.0)
            pids.append(list(t.learners.pids) if t.learners else [])
            if after_step is not None:
                after_step(t)
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


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists and tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def test_state_kept_on_sharded_ranks_equals_the_full_exchange_and_one_process(cluster, init, tiny_vla, tmp_path):
    """learner_sharding=fsdp, 3 updates: the ranks keeping the policy and AdamW between updates (`learn`, the
    optimizer gathered once, `sync`) end bitwise where the full state sent both ways each update ends (`update`),
    and within test_learner.py's tolerance of one process; the driver's policy equals the ranks'."""
    cfg = config(init, tmp_path / "k", 2, cluster.address, learner_sharding="fsdp")
    one, kept, exchanged = (GRPOTrainer(cfg, learner_only=True) for _ in range(3))
    start = params(one.policy)
    rollouts = [synthetic_rollout(tiny_vla, trajectories=8, steps=4, seed=seed) for seed in range(3)]
    group = LearnerGroup(cfg)
    try:
        for r in rollouts:
            m = group.learn(kept, r)
            assert m == pytest.approx(one.update(r), rel=1e-5, abs=1e-9)
        assert len(group.log) == 3 and group.replayed == group.retries == 0
        assert ray.get([a.weights_held.remote() for a in group.actors]) == [pytest.approx(0.5, abs=0.02)] * 2
        on_ranks = group.gather(policy=True)["policy"]
        assert all(torch.equal(on_ranks[k], v) for k, v in kept.policy.state_dict().items()), "driver != ranks"
        group.sync(kept)
        assert not group.log, "the replay log outlived the full-state gather"
        for r in rollouts:  # the same actors, the full state both ways each update
            load_state(exchanged, group.update(state_of(exchanged) | {"lr": exchanged.set_lr()}, r))
    finally:
        group.close()
    assert torch.equal(params(kept.policy), params(exchanged.policy))
    assert torch.equal(kept.gen.get_state(), exchanged.gen.get_state())
    assert torch.equal(kept.gen.get_state(), one.gen.get_state())
    mine, theirs = kept.opt.state_dict()["state"], exchanged.opt.state_dict()["state"]
    assert mine.keys() == theirs.keys() == one.opt.state_dict()["state"].keys()
    for i, s in theirs.items():
        assert all(torch.equal(mine[i][k], s[k]) for k in ("step", "exp_avg", "exp_avg_sq")) and int(s["step"]) == 24
    close_to_one_process(params(kept.policy), params(one.policy), start, "3 updates on sharded ranks keeping state")


def test_a_lora_update_returns_the_adapters_only(cluster, init, tiny_vla, tmp_path):
    """What crosses back each update with the state kept on the ranks: the trainable parameters (LoRA: adapters),
    the generator and counters; the frozen weights and AdamW's moments stay on the ranks."""
    cfg = config(init, tmp_path / "l", 2, cluster.address, groups={"model": {"lora": {"rank": 4}}},
                 learner_sharding="fsdp")
    driver = GRPOTrainer(cfg, learner_only=True)
    group = LearnerGroup(cfg)
    try:
        group.hold(state_of(driver))
        out = group.step(state_of(driver, policy=False, optimizer=False) | {"lr": driver.set_lr()},
                         synthetic_rollout(tiny_vla, trajectories=8, steps=4))
    finally:
        group.close()
    trainable = {n: p for n, p in driver.policy.named_parameters() if p.requires_grad}
    assert sorted(out) == ["gen", "iteration", "metrics", "nan_skipped", "nan_streak", "trainable"]
    assert sorted(out["trainable"]) == sorted(trainable) and all("lora_" in n for n in trainable)
    full = tensor_bytes(driver.policy.state_dict())
    assert tensor_bytes(out) == tensor_bytes(out["trainable"]) + tensor_bytes(out["gen"])
    assert tensor_bytes(out["trainable"]) == sum(p.numel() * p.element_size() for p in trainable.values())
    assert tensor_bytes(out) < 0.1 * full, f"{tensor_bytes(out)} bytes back of a {full}-byte policy"
    before = params(driver.policy)
    load_trainable(driver.policy, out["trainable"])
    assert not torch.equal(params(driver.policy), before), "the adapters did not move"


@pytest.fixture(scope="module")
def undisturbed_fsdp(cluster, init, tmp_path_factory):
    """A 4-iteration run on 2 sharded ranks, checkpoint.every=2, undisturbed: (final parameters, metrics rows,
    pids, a copy of its out folder at iteration 2, its config)."""
    d = tmp_path_factory.mktemp("fsdp_runs")

    def keep_iteration_2(t) -> None:
        if t.iteration == 2:
            shutil.copytree(t.out, d / "at2")

    cfg = config(init, d / "four", 2, cluster.address, iterations=4, every=2, learner_sharding="fsdp")
    final, rows, pids = run(cfg, after_step=keep_iteration_2)
    return final, rows, pids, d / "at2", cfg


def test_sharded_ranks_killed_in_a_checkpoints_gather_and_after_it_replay_and_change_nothing(cluster, init,
                                                                                              undisturbed_fsdp,
                                                                                              tmp_path):
    """Rank 1 killed twice: in iteration 2's checkpoint (the optimizer's gather: fresh actors load the start's state
    and replay the updates of iterations 0 and 1, then gather), then in the update of iteration 3 (0-based), one
    update after that checkpoint (fresh actors load the state gathered there, replay iteration 2's update and rerun
    iteration 3's). Parameters bitwise equal to the undisturbed run's."""
    killed, groups = [], []

    def kill_twice(trainer) -> None:
        def kill(group) -> None:  # the calls are in flight: iteration 2's gather, then iteration 3's update
            if trainer.iteration == 2 + len(killed) and len(killed) < 2:
                killed.append(group.pids[1])
                ray.kill(group.actors[1], no_restart=True)

        trainer.learners.after_submit = kill
        groups.append(trainer.learners)

    final, rows, pids = run(config(init, tmp_path / "killed", 2, cluster.address, iterations=4, every=2,
                                   learner_sharding="fsdp"), kill_twice)
    assert torch.equal(final, undisturbed_fsdp[0])
    # a retry in a checkpoint's gather is logged with the next iteration
    assert [r["perf/learner_retries"] for r in rows] == [0.0, 0.0, 1.0, 1.0]
    assert groups[0].replayed == 2 + 1
    assert killed[0] in pids[0] and killed[0] not in pids[1] and killed[1] in pids[2] and killed[1] not in pids[3]


def test_a_sharded_run_resumed_from_a_mid_run_checkpoint_equals_the_uninterrupted_one(cluster, undisturbed_fsdp):
    """The undisturbed run's folder as it was at iteration 2 (its checkpoint: the optimizer gathered from the
    ranks), resumed on fresh ranks: the uninterrupted parameters."""
    final, _, _, at2, cfg = undisturbed_fsdp
    resumed = cfg.model_copy(update={"out": str(at2), "checkpoint": cfg.checkpoint.model_copy(update={"resume": True})})
    t = MixedOutcomes(resumed)
    try:
        assert t.iteration == 2 and t.learners.base is None  # fresh ranks: the full state goes once
        t.train()
        assert t.iteration == 4 and torch.equal(params(t.policy), final)
    finally:
        t.close()
    steps = [json.loads(x)["step"] for x in (at2 / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


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

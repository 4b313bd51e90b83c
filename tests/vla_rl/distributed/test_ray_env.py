"""`RayVectorEnv` on a simulated two-node Ray cluster (`ray.cluster_utils.Cluster`): the same results as
`SubprocVectorEnv`, a GRPO run on the Ray backend equal to the local backend's, env faults survived (an actor
killed, its node removed, its process stopped, its memory past ``actor_memory_mb``) with the lost episodes re-run,
never scored, and the actors' memory in the metrics."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from sims.vector import SubprocVectorEnv  # noqa: E402
from tests.test_determinism_pin import param_digest  # noqa: E402
from tests.vla_rl.distributed.ray_cluster import kill_and_wait, two_node_cluster  # noqa: E402
from vla_rl.distributed.ray_env import RayVectorEnv  # noqa: E402
from vla_rl.envs import VectorEnv, make_env  # noqa: E402
from vla_rl.evaluation import ExpertPolicy  # noqa: E402
from vla_rl.rollout.episodes import run_waves  # noqa: E402

TASK = "mujoco/Reach-v1"
FNS = [partial(make_env, TASK, image_size=32)] * 4
ROOT = Path(__file__).resolve().parents[3]
SEEDS = [0, 1, 2, 3, 4, 5]  # two waves of four envs


@pytest.fixture(scope="module")
def cluster():
    """A head node (where the driver runs) and one worker node advertising the custom resource ``env_node``."""
    with two_node_cluster({"env_node": 4}) as c:
        yield c


def ray_env(**kwargs) -> RayVectorEnv:
    return RayVectorEnv(FNS, num_workers=2, name=TASK, actor_cpus=0.5, **kwargs)


@pytest.fixture(scope="module")
def expert_records(cluster):
    """The expert's records on `SEEDS`, undisturbed (every episode succeeds)."""
    with ray_env() as env:
        return run_waves(env, ExpertPolicy(env), SEEDS)


class FaultAt:
    """The expert, with ``fault()`` run after its chunk number ``at`` is decided and before it is stepped."""

    def __init__(self, env, at: int, fault) -> None:
        self.expert, self.at, self.fault, self.calls = ExpertPolicy(env), at, fault, 0

    def act(self, obs, instructions, active=None):
        actions = self.expert.act(obs, instructions, active)
        self.calls += 1
        if self.calls == self.at:
            self.fault()
        return actions


def kill_actor(env: RayVectorEnv, w: int) -> None:
    """ray.kill actor ``w`` and wait until Ray reports it dead."""
    if not kill_and_wait(env.actors[w], "layout"):
        pytest.fail(f"env actor {w} still answers 30 s after ray.kill")


def played_on(records: list[dict], envs: int, fault_at: int = 5) -> list[int]:
    """1 for each episode of the first wave on the first ``envs`` envs still playing when the fault hit (the expert
    acts one step per chunk: it had played ``fault_at - 1`` steps), else 0."""
    out = [int(i < envs and r["steps"] >= fault_at) for i, r in enumerate(records)]
    assert any(out)
    return out


def without_reruns(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "reruns"} for r in records]


def test_same_results_as_subproc_vector_env_and_placed_by_resource(cluster):
    """Same seeds and actions (chunks, active masks, async steps, `call`) -> equal observations, rewards, flags."""
    rng = np.random.default_rng(0)
    with ray_env(resources={"env_node": 1}) as r, SubprocVectorEnv(FNS, num_workers=2, name=TASK) as s:
        assert isinstance(r, VectorEnv) and r.camera_names == s.camera_names
        assert set(r.node_ids) == {cluster.env_node.node_id}  # only the env node offers the resource
        results = [(r.reset(seed=[3, 1, 4, 1]), s.reset(seed=[3, 1, 4, 1]))]
        for t in range(12):
            actions, active = rng.uniform(-1, 1, (4, 3, 7)), rng.random(4) < 0.75
            if t % 3 == 2:  # the pipelined path
                results.append((r.step_wait(r.step_chunk_async(actions, active)),
                                s.step_wait(s.step_chunk_async(actions, active))))
            else:
                results.append((r.step_chunk(actions, active), s.step_chunk(actions, active)))
        one = rng.uniform(-1, 1, (4, 7))
        results.append((r.step(one), s.step(one)))
        for a, b in results:
            for x, y in zip(a, b, strict=True):
                for k in x if isinstance(x, dict) else [None]:
                    np.testing.assert_array_equal(x[k] if k else x, y[k] if k else y)
        assert results[-2][0][4]["steps"].sum() > 0 and results[-2][0][0]["state"].std() > 0
        np.testing.assert_array_equal(np.stack(r.call("expert_action")), np.stack(s.call("expert_action")))
        assert r.call("max_steps", indices=[2]) == [60] and r.restarts == 0


def grpo_config(tmp_path: Path, name: str, iterations: int = 2, **distributed):
    from vla_rl.trainers.grpo import GRPOConfig

    return GRPOConfig.model_validate(dict(
        tasks=[TASK], init=str(tmp_path / "init"), out=str(tmp_path / name), iterations=iterations, threads=1,
        env={"num_envs": 4, "num_workers": 2}, sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.0},
        optim={"epochs": 1, "minibatch_size": 16, "lr": 1e-3}, eval={"every": 2, "episodes": 2 * (iterations > 1)},
        checkpoint={"every": iterations}, distributed=distributed))


def run_grpo(cfg, fault=None) -> tuple[list, list[dict], str, str]:
    """A GRPO run with mixed outcomes forced in every group (as the determinism pin: a micro policy never succeeds,
    the update then moves nothing); ``fault(trainer)`` runs before the first rollout. Returns per iteration (the
    env rewards, a digest of the rollout's images and tokens), the metrics rows, the final parameters' digest and
    the vector env's class."""
    from vla_rl.trainers.grpo import GRPOTrainer

    t = GRPOTrainer(cfg)
    seen = []
    try:
        if fault is not None:
            fault(t)
        for _ in range(cfg.iterations):
            r = t.rollout()
            seen.append((r.reward.tolist(), r.steps.tolist(), hashlib.sha256(r.images.numpy().tobytes()).hexdigest(),
                         r.tokens.tolist()))
            r.success[:] = torch.arange(len(r.success)) % 2 == 0
            t.step(r, 0.0)
        t.finish()
        rows = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        return seen, rows, param_digest(t.policy), type(t.backend.envs[TASK]).__name__
    finally:
        t.close()


def computed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith(("time_s", "_per_s", "_s"))} for r in rows]


MEMORY = ("perf/env_actor_rss_mb_max", "perf/object_store_used_mb")  # Ray's memory metrics (not computed values)


def test_grpo_on_the_ray_backend_equals_the_local_backend(cluster, tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path / "init")
    local = run_grpo(grpo_config(tmp_path, "local"))
    on_ray = run_grpo(grpo_config(tmp_path, "ray", backend="ray", address=cluster.address, env_actors=2,
                                  actor_cpus=0.5, actor_resources={"env_node": 1}, actor_memory_mb=4000))
    assert (local[3], on_ray[3]) == ("SubprocVectorEnv", "RayVectorEnv")
    assert len(on_ray[1]) == 2 and "eval/success" in on_ray[1][-1]
    assert on_ray[0] == local[0]  # rewards, steps, images, tokens of each iteration
    for row in on_ray[1]:  # an actor holds MuJoCo, its renderer and Ray's worker: tens to hundreds of MB
        assert 50 < row["perf/env_actor_rss_mb_max"] < 4000 and row["perf/object_store_used_mb"] >= 0
    assert not any(k in row for row in local[1] for k in MEMORY)  # the local backend's metrics are unchanged
    assert [{k: v for k, v in r.items() if k not in MEMORY} for r in computed(on_ray[1])] == computed(local[1])
    assert on_ray[2] == local[2]  # final parameters


def test_grpo_survives_an_env_actor_killed_mid_rollout(cluster, tiny_vla, tmp_path):
    """The killed actor's episodes are re-run: the iteration keeps all its trajectories (none lost, none scored a
    failure for it), each with exactly the samples of its one complete attempt; the re-runs are logged."""
    tiny_vla.save_pretrained(tmp_path / "init")
    cfg = grpo_config(tmp_path, "fault", iterations=1, backend="ray", address=cluster.address, env_actors=2,
                      actor_cpus=0.5)

    def kill_on_third_chunk(trainer) -> None:
        env = trainer.backend.envs[TASK]
        step_chunk, calls = env.step_chunk, []

        def faulty(actions, active=None):
            calls.append(1)
            if len(calls) == 3:
                kill_actor(env, 0)
            return step_chunk(actions, active)

        env.step_chunk = faulty

    seen, rows, _, _ = run_grpo(cfg, kill_on_third_chunk)
    rewards, steps, _, _ = seen[0]
    assert len(rewards) == 4 and rows[0]["rollout/trajectories"] == 4.0
    assert rows[0]["rollout/episodes_rerun"] == 2.0 and rows[0]["perf/env_restarts"] == 1.0
    n_exec = tiny_vla.config.n_action_steps or tiny_vla.config.chunk_size
    assert rows[0]["rollout/samples"] == sum(math.ceil(s / n_exec) for s in steps)


def test_an_env_actor_killed_mid_rollout_has_its_episodes_rerun(cluster, expert_records, caplog):
    assert all(r["success"] for r in expert_records)
    with ray_env() as env:
        records = run_waves(env, FaultAt(env, 5, lambda: kill_actor(env, 0)), SEEDS)
        assert env.restarts == 1
    assert [r["reruns"] for r in records] == played_on(expert_records, envs=2)  # actor 0 held envs 0-1
    assert without_reruns(records) == without_reruns(expert_records)  # all succeed: no fault scored a failure
    assert "re-running them" in caplog.text


def test_a_node_lost_mid_rollout_has_its_actors_replaced_elsewhere(cluster, expert_records):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    doomed = cluster.add_node(num_cpus=2)
    strategy = NodeAffinitySchedulingStrategy(doomed.node_id, soft=True)  # there while it lives, elsewhere after
    with ray_env(actor_options={"scheduling_strategy": strategy}, start_timeout_s=60) as env:
        assert set(env.node_ids) == {doomed.node_id}
        records = run_waves(env, FaultAt(env, 5, lambda: cluster.remove_node(doomed)), SEEDS)
        assert env.restarts == 2 and doomed.node_id not in env.node_ids
    assert [r["reruns"] for r in records] == played_on(expert_records, envs=4)
    assert without_reruns(records) == without_reruns(expert_records)


def test_a_stopped_actor_is_replaced_after_the_deadline(cluster):
    with ray_env(step_timeout_s=2.0, start_timeout_s=60) as env:
        env.reset(seed=0)
        pid = env.worker_pids[1]
        os.kill(pid, signal.SIGSTOP)  # hung: alive, silent
        t0 = time.monotonic()
        _, _, _, truncated, info = env.step_chunk(np.zeros((4, 2, 7)))
        waited = time.monotonic() - t0
        assert 2.0 <= waited < 20.0 and env.restarts == 1 and env.worker_pids[1] != pid
        assert info["lost"].tolist() == [False, False, True, True] and truncated[2:].all()
        assert info["steps"].tolist() == [2, 2, 0, 0]
        _, info = env.reset(seed=0)  # the replacement plays
        assert not info["lost"].any()
        assert env.step_chunk(np.zeros((4, 2, 7)))[4]["steps"].tolist() == [2, 2, 2, 2]
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:  # Ray SIGKILLs the stopped process after its kill timeout
        time.sleep(0.2)
    assert not alive(pid)


def alive(pid: int) -> bool:
    """True while ``pid`` runs or is stopped (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class MemoryHog:
    """A Reach env that, on its ``at``-th chunk, allocates and holds ``mb`` MB (touched, so resident), once per
    test: the first env to do it leaves ``marker``, and the others (and the replacement actors) never do."""

    def __init__(self, marker: str, at: int, mb: int) -> None:
        self.env, self.marker, self.at, self.mb, self.chunks, self.held = make_env(TASK, image_size=32), marker, at, \
            mb, 0, None

    def step_chunk(self, actions, render=False):
        self.chunks += 1
        if self.chunks == self.at and self._first():
            self.held = np.ones(self.mb * 2**20, np.uint8)
        return self.env.step_chunk(actions, render=render)

    def _first(self) -> bool:
        """True for the one env, among all the actors, that creates ``marker`` (O_EXCL: atomic)."""
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def __getattr__(self, name):
        return getattr(self.__dict__["env"], name)


def test_an_actor_past_its_memory_bound_is_replaced_and_its_episodes_rerun(cluster, expert_records, tmp_path,
                                                                          caplog):
    """The bound is asked of the scheduler (memory=); an actor whose RSS passes it mid-rollout is replaced, its
    episodes re-run and the warning names the setting; a bound the actors pass at once is a clear error."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # MemoryHog travels to the actors by value
    with ray_env() as probe:
        probe.reset(seed=0)
        base = max(probe.rss_mb)
        assert 50 < base < 2000 and probe.memory_stats()["env_actor_rss_mb_max"] == base
    limit = int(base) + 150
    fns = [partial(MemoryHog, str(tmp_path / "hogged"), 5, 300)] * 4
    free = ray.available_resources().get("memory", 0)
    with RayVectorEnv(fns, num_workers=2, name=TASK, actor_cpus=0.5, memory_mb=limit) as env:
        assert free - ray.available_resources().get("memory", 0) == pytest.approx(2 * limit * 2**20, rel=0.01)
        records = run_waves(env, ExpertPolicy(env), SEEDS)
        assert env.restarts == 1 and max(env.rss_mb) < limit
    assert (tmp_path / "hogged").exists()
    rerun = {i for i, r in enumerate(records) if r["reruns"]}  # the episodes the hog's actor was playing
    assert rerun and (rerun <= {0, 1} or rerun <= {2, 3}) and sum(r["reruns"] for r in records) == len(rerun)
    assert without_reruns(records) == without_reruns(expert_records)
    assert "above distributed.actor_memory_mb=" in caplog.text and "re-running them" in caplog.text
    with pytest.raises(RuntimeError, match="past distributed.actor_memory_mb=10 MB right after building"):
        RayVectorEnv(FNS, num_workers=2, name=TASK, actor_cpus=0.5, memory_mb=10)

"""Rollout inference on Ray actors (`vla_rl.distributed.inference`) on a simulated two-node cluster: a GRPO run whose
actions come from an inference actor on the other node equals the run whose driver infers; the actor gets every
update's weights through the object store and refuses a version it does not hold; a killed inference actor is
replaced and its call repeated, ending as the undisturbed run; several actors split a call's rows deterministically."""

from __future__ import annotations

import os

import pytest
import torch

ray = pytest.importorskip("ray")

from tests.vla_rl.distributed.ray_cluster import kill_and_wait, two_node_cluster  # noqa: E402
from tests.vla_rl.distributed.test_ray_env import computed, grpo_config, run_grpo  # noqa: E402
from vla_rl.distributed.config import DistributedConfig  # noqa: E402
from vla_rl.distributed.inference import RemotePolicy  # noqa: E402
from vla_rl.distributed.weights import StaleWeights, WeightBoard  # noqa: E402
from vla_rl.policies.base import cpu_state  # noqa: E402

MEMORY = ("perf/env_actor_rss_mb_max", "perf/object_store_used_mb", "perf/inference_restarts",
          "perf/inference_actor_rss_mb_max")


@pytest.fixture(scope="module")
def cluster():
    """The driver on the head node; the worker node advertises ``infer_node`` (where the inference actors go)."""
    with two_node_cluster({"infer_node": 2}) as c:
        yield c


@pytest.fixture(scope="module")
def driver_run(cluster, tiny_vla, tmp_path_factory):
    """The 2-iteration GRPO run whose driver infers (the local backend): what the inference actors must equal."""
    tmp = tmp_path_factory.mktemp("driver")
    tiny_vla.save_pretrained(tmp / "init")
    return tmp, run_grpo(grpo_config(tmp, "driver"))


def inference_config(tmp, name, cluster, **extra):
    return grpo_config(tmp, name, backend="ray", address=cluster.address, env_actors=2, actor_cpus=0.5,
                       inference_actors=1, inference_cpus=0.5, inference_resources={"infer_node": 1}, **extra)


def test_grpo_with_an_inference_actor_equals_the_driver_inferring(driver_run, cluster):
    tmp, (seen, rows, digest, _) = driver_run
    placed = []
    on_actor = run_grpo(inference_config(tmp, "remote", cluster), fault=lambda t: placed.extend(t.remote.devices()))
    assert on_actor[0] == seen  # each iteration's rewards, steps, images and tokens: iteration 2 acted on version 1
    assert [{k: v for k, v in r.items() if k not in MEMORY} for r in computed(on_actor[1])] == computed(rows)
    assert on_actor[2] == digest  # final parameters
    assert [r["perf/inference_restarts"] for r in on_actor[1]] == [0.0, 0.0]
    assert all(100 < r["perf/inference_actor_rss_mb_max"] < 4000 for r in on_actor[1])  # torch + the policy copy
    [(device, pid, node)] = placed
    assert device == "cpu" and node == cluster.env_node.node_id and pid != os.getpid()  # on the worker node


def test_a_killed_inference_actor_is_replaced_and_the_run_ends_as_undisturbed(driver_run, cluster):
    """The actor is killed while the rollout is under way: the call it lost is repeated on a fresh actor (which
    loads the current weights) with the same generator state, so nothing of the run changes but the restart count."""
    tmp, (seen, rows, digest, _) = driver_run
    cfg = inference_config(tmp, "killed", cluster)

    def kill_on_third_call(trainer) -> None:
        remote, calls = trainer.remote, []
        submit = remote._submit

        def faulty(k, batch, kwargs, state):
            calls.append(1)
            if len(calls) == 3:
                assert kill_and_wait(remote.actors[k])
            return submit(k, batch, kwargs, state)

        remote._submit = faulty

    on_actor = run_grpo(cfg, kill_on_third_call)
    assert on_actor[0] == seen and on_actor[2] == digest
    assert [r["perf/inference_restarts"] for r in on_actor[1]] == [1.0, 1.0]


def test_actors_act_only_on_the_version_a_rollout_needs(cluster, tiny_vla):
    dist = DistributedConfig(backend="ray", address=cluster.address, inference_actors=1, inference_cpus=0.5)
    remote, board = RemotePolicy(tiny_vla, dist, threads=1), WeightBoard()
    try:
        with pytest.raises(StaleWeights, match="no weights published"):
            remote.act(_batch(tiny_vla, 2))
        remote.use(board.publish(cpu_state(tiny_vla), 0))
        remote.require(0)
        with pytest.raises(StaleWeights, match="version 0 but iteration 1"):
            remote.require(1)
        before = remote.act(_batch(tiny_vla, 2), greedy=True)
        moved = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in cpu_state(tiny_vla).items()}
        remote.use(board.publish(moved, 1))
        remote.require(1)
        after = remote.act(_batch(tiny_vla, 2), greedy=True)
        local = _copy_with(tiny_vla, moved).act(_batch(tiny_vla, 2), greedy=True)
        assert torch.equal(after.logprobs, local.logprobs) and not torch.equal(after.logprobs, before.logprobs)
    finally:
        remote.close()


def test_several_actors_split_the_rows_and_sample_each_slice_from_a_drawn_seed(cluster, tiny_vla):
    """Two actors: the rows' first half sampled by one, the second by the other, each with a generator seeded from
    the trainer's generator; the same as acting locally slice by slice with those seeds, and the same twice."""
    dist = DistributedConfig(backend="ray", address=cluster.address, inference_actors=2, inference_cpus=0.5)
    remote = RemotePolicy(tiny_vla, dist, threads=1)
    remote.use(WeightBoard().publish(cpu_state(tiny_vla), 0))
    batch = _batch(tiny_vla, 5)
    try:
        outs = [remote.act(batch, generator=torch.Generator().manual_seed(7), temperature=1.5) for _ in range(2)]
    finally:
        remote.close()
    assert torch.equal(outs[0].tokens, outs[1].tokens) and outs[0].tokens.shape[0] == 5
    seeds = torch.randint(2**62, (2,), generator=torch.Generator().manual_seed(7)).tolist()
    for (start, stop), seed in zip([(0, 2), (2, 5)], seeds, strict=True):  # linspace(0, 5, 3).round(): 0, 2, 5
        ref = tiny_vla.act(batch.index(slice(start, stop)), generator=torch.Generator().manual_seed(seed),
                           temperature=1.5)
        assert torch.equal(outs[0].tokens[start:stop], ref.tokens)
        torch.testing.assert_close(outs[0].logprobs[start:stop], ref.logprobs)


def _batch(policy, n: int):
    import numpy as np

    proc = policy.processor()
    rng = np.random.default_rng(0)
    size = policy.config.vision.image_size
    images = proc.images({c: rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8) for c in proc.cameras})
    state = rng.standard_normal((n, policy.config.state_dim)).astype("float32") if proc.state_stats else None
    return proc.batch(images, ["reach the target"] * n, state)


def _copy_with(policy, state):
    import copy

    other = copy.deepcopy(policy)
    other.load_state_dict(state)
    return other


def test_an_inference_actor_no_node_can_hold_is_a_clear_error(cluster, tiny_vla):
    from vla_rl.distributed.inference import InferenceFailed

    dist = DistributedConfig(backend="ray", address=cluster.address, inference_actors=1, inference_timeout_s=3,
                             inference_resources={"gpu_node": 1})
    remote = RemotePolicy(tiny_vla, dist, threads=1)
    remote.use(WeightBoard().publish(cpu_state(tiny_vla), 0))
    with pytest.raises(InferenceFailed, match=r"did not start within 3 s: no node has room.*'gpu_node': 1"):
        remote.act(_batch(tiny_vla, 2), greedy=True)
    remote.close()

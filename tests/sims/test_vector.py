"""SubprocVectorEnv: the vector-env contract, shared-memory images, fault tolerance, determinism, cleanup."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from multiprocessing import active_children
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pytest

from sims.vector import SubprocVectorEnv
from vla_rl.envs import VectorEnv, make_env

TASK = "mujoco/Reach-v1"
SIZE = 64
KW = {"image_size": SIZE}
ROOT = Path(__file__).resolve().parents[2]


def vec(num_envs: int, task: str = TASK, **kwargs) -> SubprocVectorEnv:
    """``num_envs`` envs of ``task`` from picklable factories (what `vla_rl.envs.make_vector_env` builds)."""
    return SubprocVectorEnv([partial(make_env, task, **KW)] * num_envs, name=task, **kwargs)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def venv():
    env = vec(4, num_workers=2)
    yield env
    env.close()


def test_obs_shapes_dtypes_and_info(venv):
    assert isinstance(venv, VectorEnv)
    assert venv.camera_names == ("agentview", "wrist")
    obs, info = venv.reset(seed=0)
    assert set(obs) == {"agentview", "wrist", "state"}
    for cam in venv.camera_names:
        assert obs[cam].shape == (4, SIZE, SIZE, 3) and obs[cam].dtype == np.uint8
        assert obs[cam].reshape(4, -1).std(axis=1).min() > 10.0, f"{cam} image looks blank"
    assert obs["state"].shape == (4, 8) and obs["state"].dtype == np.float32
    assert len(info["instruction"]) == 4 and all(isinstance(s, str) and s for s in info["instruction"])
    assert info["success"].dtype == bool and info["lost"].dtype == bool and not info["lost"].any()
    assert info["steps"].shape == (4,) and not info["steps"].any()

    obs, reward, terminated, truncated, info = venv.step(np.zeros((4, 7), np.float32))
    assert reward.shape == (4,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool and terminated.shape == truncated.shape == (4,)
    assert info["steps"].tolist() == [1, 1, 1, 1]
    obs, *_, info = venv.step_chunk(np.zeros((4, 5, 7), np.float32))
    assert info["steps"].tolist() == [5, 5, 5, 5]
    assert obs["agentview"].shape == (4, SIZE, SIZE, 3)


def test_images_change_when_the_arm_moves(venv):
    obs0, _ = venv.reset(seed=3)
    action = np.zeros((4, 8, 7), np.float32)
    action[:, :, 1] = 1.0  # sideways
    action[:, :, 2] = 1.0  # up
    obs1, *_, info = venv.step_chunk(action)
    assert info["steps"].tolist() == [8, 8, 8, 8]
    assert np.abs(obs1["state"][:, :3] - obs0["state"][:, :3]).max() > 0.05
    for cam in venv.camera_names:
        diff = np.abs(obs1[cam].astype(np.int16) - obs0[cam].astype(np.int16)).reshape(4, -1).mean(axis=1)
        assert diff.min() > 1.0, f"{cam} images did not change: {diff}"
    # the returned obs are copies, not views of shared memory
    before = obs1["agentview"].copy()
    venv.step(action[:, 0])
    np.testing.assert_array_equal(obs1["agentview"], before)


def test_active_mask_leaves_inactive_envs_untouched(venv):
    obs0, _ = venv.reset(seed=11)
    states0 = venv.call("get_state")
    rng = np.random.default_rng(0)
    active = np.array([True, False, True, False])
    obs1, reward, terminated, truncated, info = venv.step_chunk(rng.uniform(-1, 1, (4, 4, 7)), active=active)
    assert info["steps"].tolist() == [4, 0, 4, 0]
    states1 = venv.call("get_state")
    for i in (1, 3):
        np.testing.assert_array_equal(states1[i], states0[i])
        for k in obs0:
            np.testing.assert_array_equal(obs1[k][i], obs0[k][i])
        assert reward[i] == 0 and not terminated[i] and not truncated[i]
    for i in (0, 2):
        assert not np.array_equal(states1[i], states0[i])
    with pytest.raises(ValueError, match="active"):
        venv.step(np.zeros((4, 7)), active=np.ones(3, bool))


def test_call_returns_one_result_per_env(venv):
    _, info = venv.reset(seed=[5, 6, 7, 8])
    acts = venv.call("expert_action")
    assert len(acts) == 4 and all(a.shape == (7,) and a.dtype == np.float32 for a in acts)
    sub = venv.call("expert_action", indices=[3, 1])
    np.testing.assert_array_equal(sub[0], acts[3])
    np.testing.assert_array_equal(sub[1], acts[1])
    assert venv.call("instruction") == info["instruction"]
    assert venv.call("seed_used") == [5, 6, 7, 8]
    with pytest.raises(RuntimeError, match="AttributeError"):
        venv.call("no_such_method")
    # an int seed s gives env i seed s + i
    venv.reset(seed=5)
    assert venv.call("seed_used") == [5, 6, 7, 8]


def test_bad_actions_raise_and_workers_survive(venv):
    venv.reset(seed=0)
    pids = venv.worker_pids
    nan = np.zeros((4, 7), np.float32)
    nan[2, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        venv.step(nan)
    inf = np.zeros((4, 3, 7), np.float32)
    inf[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        venv.step_chunk(inf)
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="shape"):
        venv.step_chunk(np.zeros((4, 7)))
    assert all(_alive(p) for p in pids) and venv.worker_pids == pids
    _, _, _, _, info = venv.step(np.zeros((4, 7)))
    assert info["steps"].tolist() == [1, 1, 1, 1] and not info["lost"].any()
    assert venv.restarts == 0


def _check_lost_then_recover(env: SubprocVectorEnv, victim: int, old_pid: int) -> None:
    lo, hi = env._slices[victim]
    lost = np.zeros(env.num_envs, bool)
    lost[lo:hi] = True
    assert env.restarts == 1
    assert env.worker_pids[victim] != old_pid and _wait_gone([old_pid], 5.0)
    # further steps before a reset are no-ops that keep reporting lost
    _, reward, terminated, truncated, info = env.step(np.zeros((env.num_envs, 7)))
    assert info["lost"].tolist() == lost.tolist() and truncated.tolist() == lost.tolist()
    assert info["steps"].tolist() == (~lost).astype(int).tolist()
    assert not terminated.any() and not reward.any()
    obs, info = env.reset(seed=0)
    assert not info["lost"].any()
    assert obs["wrist"].reshape(env.num_envs, -1).std(axis=1).min() > 10.0
    _, _, _, truncated, info = env.step_chunk(np.zeros((env.num_envs, 2, 7)))
    assert info["steps"].tolist() == [2] * env.num_envs and not info["lost"].any() and not truncated.any()
    assert env.restarts == 1


def test_killed_worker_is_restarted_and_its_envs_are_lost():
    with vec(4, num_workers=2) as env:
        env.reset(seed=0)
        env.step(np.zeros((4, 7)))
        victim = env.worker_of(2)
        old = env.worker_pids[victim]
        os.kill(old, signal.SIGKILL)
        _, reward, terminated, truncated, info = env.step(np.full((4, 7), 0.3))
        assert info["lost"].tolist() == [False, False, True, True]
        assert truncated.tolist() == [False, False, True, True]
        assert not terminated.any() and not reward[2:].any()
        assert info["steps"].tolist() == [1, 1, 0, 0]
        _check_lost_then_recover(env, victim, old)


def test_hung_worker_times_out_and_is_restarted():
    with vec(4, num_workers=2, step_timeout_s=3.0) as env:
        env.reset(seed=0)
        victim = env.worker_of(0)
        old = env.worker_pids[victim]
        os.kill(old, signal.SIGSTOP)
        t0 = time.monotonic()
        _, _, terminated, truncated, info = env.step(np.zeros((4, 7)))
        assert time.monotonic() - t0 >= 3.0
        assert info["lost"].tolist() == [True, True, False, False]
        assert truncated.tolist() == [True, True, False, False] and not terminated.any()
        assert info["steps"].tolist() == [0, 0, 1, 1]
        _check_lost_then_recover(env, victim, old)


def _rollout(num_workers: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(1234)
    with vec(4, num_workers=num_workers) as env:
        env.reset(seed=[3, 1, 4, 1])
        for t in range(6):
            if t % 2:
                obs, *_ = env.step(rng.uniform(-1, 1, (4, 7)))
            else:
                obs, *_ = env.step_chunk(rng.uniform(-1, 1, (4, 3, 7)))
        return env.call("get_state"), obs


def test_determinism_across_worker_counts():
    ref_states, ref_obs = _rollout(1)
    for nw in (2, 4):
        states, obs = _rollout(nw)
        for a, b in zip(ref_states, states, strict=True):
            np.testing.assert_array_equal(a, b)
        for k in ref_obs:
            np.testing.assert_array_equal(ref_obs[k], obs[k], err_msg=f"{k} differs with {nw} workers")


def test_close_and_gc_leave_no_workers_or_shared_memory():
    env = vec(3, num_workers=2)
    env.reset(seed=0)
    pids, names = env.worker_pids, [s.name for s in env._res.shms]
    env.close()
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(seed=0)
    assert _wait_gone(pids, 5.0)
    assert not [p for p in active_children() if p.pid in pids]
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name=name)

    env = vec(2, num_workers=2)
    pids, names = env.worker_pids, [s.name for s in env._res.shms]
    del env
    gc.collect()
    assert _wait_gone(pids, 5.0)
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name=name)


def test_workers_exit_when_the_parent_is_killed():
    script = textwrap.dedent(f"""
        import sys, time
        from functools import partial
        from sims.vector import SubprocVectorEnv
        from vla_rl.envs import make_env
        if __name__ == "__main__":
            env = SubprocVectorEnv([partial(make_env, {TASK!r}, **{KW!r})] * 2, num_workers=2)
            print(*env.worker_pids, flush=True)
            print(*[s.name for s in env._res.shms], flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        names = proc.stdout.readline().split()
        assert len(pids) == 2 and all(_alive(p) for p in pids) and len(names) == 3
        proc.kill()
        _, err = proc.communicate(timeout=30)  # EOF once the workers and the resource tracker are gone
        assert _wait_gone(pids, 10.0), "workers outlived their parent"
        for name in names:  # the resource tracker unlinked the orphaned blocks
            with pytest.raises(FileNotFoundError):
                SharedMemory(name=name)
    finally:
        proc.kill()
        proc.wait()


def test_forkserver_start_method_and_startup_errors():
    before = set(active_children())
    with vec(3, num_workers=2, start_method="forkserver") as env:
        obs, _ = env.reset(seed=0)
        assert obs["agentview"].shape == (3, SIZE, SIZE, 3)
        assert env.step(np.zeros((3, 7)))[4]["steps"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="fork"):
        vec(2, start_method="fork")
    with pytest.raises(RuntimeError, match="unknown robot task 'mujoco/NoSuchTask-v1'"):
        vec(2, task="mujoco/NoSuchTask-v1", num_workers=2)  # raised in the workers, reported by the parent
    assert set(active_children()) <= before

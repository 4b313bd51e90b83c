"""The one episode loop (`run_waves`) on a fake vector env: waves, padding, dropped envs, a chunk budget, pipelining."""

import numpy as np
import pytest

from vla_rl.rollout.episodes import run_waves


class CountingEnv:
    """Env i runs ``seed`` control steps (its seed is its length), then terminates; ``seed`` % 5 == 0 succeeds.
    Two workers of ``num_envs / 2`` envs each; the observation is the steps played so far."""

    camera_names = ("cam",)

    def __init__(self, num_envs: int = 4) -> None:
        self.num_envs, self.num_workers = num_envs, 2
        self.t = np.zeros(num_envs, int)
        self.calls: list[np.ndarray] = []  # the active mask of every step

    def worker_of(self, i: int) -> int:
        return int(i >= self.num_envs // 2)

    def reset(self, seed):
        self.seeds, self.t[:] = np.array(seed), 0
        return self._obs(), {"instruction": [f"go {s}" for s in seed]}

    def step_chunk(self, actions, active):
        self.calls.append(active.copy())
        steps = np.where(active, np.minimum(actions.shape[1], self.seeds - self.t), 0)
        self.t += steps
        done = self.t >= self.seeds
        info = {"steps": steps, "success": done & (self.seeds % 5 == 0), "lost": np.zeros(self.num_envs, bool)}
        return self._obs(), np.zeros(self.num_envs), done, np.zeros(self.num_envs, bool), info

    def step_chunk_async(self, actions, active):
        return self.step_chunk(actions, active)

    def step_wait(self, result):
        return result

    def _obs(self):
        return {"cam": np.repeat(self.t[:, None, None, None], 3, -1).astype(np.uint8), "state": self.t[:, None] * 1.0}


class ChunksOf:
    def __init__(self, t: int) -> None:
        self.t, self.seen = t, []

    def act(self, obs, instructions, active=None):
        self.seen.append((obs["state"][active, 0].tolist(), [instructions[i] for i in np.flatnonzero(active)]))
        return np.zeros((len(instructions), self.t, 7), np.float32)


class Log:
    def __init__(self) -> None:
        self.events = []

    def on_reset(self, wave):
        self.events.append(("reset", wave.first, list(wave.seeds)))

    def on_chunk(self, wave, rows, info):
        self.events.append(("chunk", rows.tolist(), info["steps"][rows].tolist()))


def test_waves_pad_drop_finished_envs_and_record_every_seed():
    env, policy, log = CountingEnv(4), ChunksOf(3), Log()
    records = run_waves(env, policy, [5, 2, 7, 4, 1, 10], log)
    assert [(r["seed"], r["steps"], r["success"], r["instruction"]) for r in records] == [
        (5, 5, True, "go 5"), (2, 2, False, "go 2"), (7, 7, False, "go 7"), (4, 4, False, "go 4"),
        (1, 1, False, "go 1"), (10, 10, True, "go 10")]
    assert [e for e in log.events if e[0] == "reset"] == [("reset", 0, [5, 2, 7, 4]), ("reset", 4, [1, 10])]
    assert env.calls[0].tolist() == [True] * 4 and env.calls[1].tolist() == [True, False, True, True]
    assert all(not c[2:].any() for c in env.calls[3:])  # the second wave's padding envs never step
    assert policy.seen[1] == ([3.0, 3.0, 3.0], ["go 5", "go 7", "go 4"])  # live rows only, their latest obs
    assert ("chunk", [0, 1], [1, 3]) in log.events  # the second wave's first chunk: seed 1 stops after one step


def test_a_chunk_budget_stops_the_wave():
    env = CountingEnv(2)
    records = run_waves(env, ChunksOf(2), [9, 9, 9], max_chunks=2)
    assert [r["steps"] for r in records] == [4, 4, 4] and len(env.calls) == 4


@pytest.mark.parametrize("t", [1, 3])
def test_pipelined_halves_play_the_same_episodes(t):
    seeds = [5, 2, 7, 4, 1, 10, 3]
    seq, pipe = Log(), Log()
    assert run_waves(CountingEnv(4), ChunksOf(t), seeds, seq) == run_waves(CountingEnv(4), ChunksOf(t), seeds, pipe,
                                                                           pipelined=True)
    halves = [e for e in pipe.events if e[0] == "chunk"]
    assert all(set(rows) <= {0, 1} or set(rows) <= {2, 3} for _, rows, _ in halves)  # one half per chunk


def test_pipelining_needs_two_workers():
    env = CountingEnv(4)
    env.num_workers = 1
    with pytest.raises(ValueError, match="at least 2 workers"):
        run_waves(env, ChunksOf(1), [1], pipelined=True)


class FlakyEnv(CountingEnv):
    """A `CountingEnv` whose worker 1 (envs ``num_envs / 2 ..``; every env with ``everyone``) is lost at each
    step_chunk call numbered in ``faults``: those envs report ``lost`` (and stop) until the next reset, as
    `SubprocVectorEnv` does."""

    def __init__(self, num_envs: int = 4, faults: tuple[int, ...] = (), everyone: bool = False) -> None:
        super().__init__(num_envs)
        self.faults, self.lost = set(faults), np.zeros(num_envs, bool)
        self.first_lost = 0 if everyone else num_envs // 2
        self.resets: list[list[int]] = []

    def reset(self, seed):
        self.lost[:] = False
        self.resets.append(list(seed))
        return super().reset(seed)

    def step_chunk(self, actions, active):
        if len(self.calls) + 1 in self.faults:
            self.lost[self.first_lost :] = True
        obs, reward, done, truncated, info = super().step_chunk(actions, active & ~self.lost)
        info["lost"] = self.lost.copy()
        return obs, reward, done, truncated | self.lost, info


def test_episodes_lost_to_a_worker_fault_are_rerun_and_equal_the_undisturbed_ones():
    seeds = [5, 2, 7, 4, 1, 10]
    clean = run_waves(CountingEnv(4), ChunksOf(3), seeds)
    env, log = FlakyEnv(4, faults=(2,)), Log()
    records = run_waves(env, ChunksOf(3), seeds, log)
    assert [r["reruns"] for r in records] == [0, 0, 1, 1, 0, 0]  # seeds 7 and 4 sat on worker 1 in the first wave
    assert [{k: v for k, v in r.items() if k != "reruns"} for r in records] == [
        {k: v for k, v in r.items() if k != "reruns"} for r in clean]
    assert env.resets == [[5, 2, 7, 4], [1, 10, 10, 10], [7, 4, 4, 4]]  # the re-run wave comes last, padded
    assert ("reset", 2, [7, 4]) in log.events


def test_reruns_are_bounded_and_what_stays_lost_is_void(caplog):
    env = FlakyEnv(4, faults=tuple(range(1, 100)), everyone=True)  # every worker fails on every step
    records = run_waves(env, ChunksOf(3), [5, 2, 7], max_reruns=2)
    assert [(r["lost"], r["success"], r["reruns"]) for r in records] == [(True, False, 2)] * 3
    assert len(env.resets) == 3 and "still lost after 2 re-run(s)" in caplog.text
    no_rerun = run_waves(FlakyEnv(4, faults=(1,)), ChunksOf(3), [5, 2, 7, 4], max_reruns=0)
    assert [r["lost"] for r in no_rerun] == [False, False, True, True]

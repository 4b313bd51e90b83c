"""The initial-state range curriculum: its promotion rule, its config checks, and a GRPO run rolling out on the
rung's env, promoted, checkpointed and resumed on the same rung."""

import json

import pytest
import torch
from pydantic import ValidationError

from vla_rl.trainers.curriculum import CurriculumConfig, RangeCurriculum
from vla_rl.trainers.grpo import GRPOTrainer

from .test_grpo import cfg_for, init_ckpt  # noqa: F401  (the fixture)

PICK = "mujoco/PickCube-v1"


def outcomes(*bits: int) -> torch.Tensor:
    return torch.tensor(bits, dtype=torch.bool)


def test_a_task_climbs_when_the_mean_of_its_last_window_rounds_reaches_promote_at():
    c = RangeCurriculum(CurriculumConfig(spreads=[0.1, 0.5, 1.0], promote_at=0.6, window=2), [PICK, "other"])
    assert c.task_id(PICK) == f"{PICK}@spread=0.1"
    steps = [(outcomes(1, 1, 1, 1), False),  # 1.0, but the window is not full
             (outcomes(0, 0, 0, 0), False),  # (1 + 0) / 2 = 0.5 < 0.6
             (outcomes(0, 0, 0, 1), False),  # (0 + 0.25) / 2
             (outcomes(1, 1, 1, 1), True)]   # (0.25 + 1) / 2 = 0.625
    assert [c.record(PICK, s) for s, _ in steps] == [p for _, p in steps]
    assert c.spread(PICK) == 0.5 and c.task_id(PICK) == f"{PICK}@spread=0.5" and c.spread("other") == 0.1
    assert c.record(PICK, outcomes()) is False  # an empty round (all lost) counts for nothing
    assert not c.record(PICK, outcomes(1, 1))  # the window restarts at each rung
    assert c.record(PICK, outcomes(1, 1)) and c.task_id(PICK) == PICK  # the last rung: the task itself
    assert not c.record(PICK, outcomes(1, 1)) and not c.record(PICK, outcomes(1, 1)) and c.spread(PICK) == 1.0
    assert c.metrics() == {f"curriculum/{PICK}/spread": 1.0, "curriculum/other/spread": 0.1}

    again = RangeCurriculum(c.cfg, [PICK, "other"])
    again.load_state_dict(c.state_dict())
    assert again.task_id(PICK) == PICK and again.spread("other") == 0.1
    with pytest.raises(ValueError, match="same tasks"):
        RangeCurriculum(c.cfg, [PICK]).load_state_dict(c.state_dict())


@pytest.mark.parametrize("spreads,task,match", [
    ([0.5, 0.1, 1.0], PICK, "increase"),
    ([0.0, 1.0], PICK, r"\(0, 1\]"),
    ([0.1, 0.5], PICK, "ends at 0.5 but task"),  # the full task: the ladder must end at 1
    ([0.05, 1.0], "mujoco/PickCubeNarrow-v2", "has spread 0.15"),  # a narrow task: end on its own spread
])
def test_a_ladder_that_does_not_fit_the_tasks_is_refused_at_load(init_ckpt, tmp_path, spreads, task, match):  # noqa: F811
    with pytest.raises(ValidationError, match=match):
        cfg_for(init_ckpt, tmp_path / "r", tasks=[task], curriculum={"spreads": spreads})
    assert cfg_for(init_ckpt, tmp_path / "r", tasks=["mujoco/PickCubeNarrow-v2"],
                   curriculum={"spreads": [0.05, 0.15]}).curriculum.spreads == [0.05, 0.15]


def test_grpo_rolls_out_on_the_rung_and_resumes_there(init_ckpt, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    ladder = {"spreads": [0.1, 0.5, 1.0], "promote_at": 1.0, "window": 1}  # the untrained policy never promotes
    t = GRPOTrainer(cfg_for(init_ckpt, run, tasks=[PICK], iterations=3, curriculum=ladder))
    try:
        t.step(t.rollout(), 0.0)
        first_id, first_env = t.backend.rung_envs[PICK]
        assert first_id == f"{PICK}@spread=0.1"
        assert t.backend.curriculum.record(PICK, outcomes(1, 1, 1, 1))  # as if this rung were mastered
        t.step(t.rollout(), 0.0)
        assert t.backend.rung_envs[PICK][0] == f"{PICK}@spread=0.5" and t.backend.rung_envs[PICK][1] is not first_env
        assert not first_env._finalizer.alive  # the previous rung's workers stopped
    finally:
        t.close()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r[f"curriculum/{PICK}/spread"] for r in rows] == [0.1, 0.5]
    resumed = GRPOTrainer(cfg_for(init_ckpt, run, tasks=[PICK], iterations=3, curriculum=ladder,
                                  checkpoint={"resume": True}))
    try:
        assert resumed.iteration == 2 and resumed.backend.curriculum.task_id(PICK) == f"{PICK}@spread=0.5"
    finally:
        resumed.close()

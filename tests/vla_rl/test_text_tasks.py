"""The core's text-task contract and registry: every entry point resolves to a task implementing the contract
under its registered name, a misspelt name is refused with the valid ones, and the core reaches ``tasks`` only
through those entry-point strings."""

import subprocess
import sys

import pytest

from vla_rl.registry import RegistryError
from vla_rl.text_tasks import TEXT_TASKS, TextTask, check_text_task, make_text_task, prompt_text


def test_every_entry_point_builds_a_task_of_that_name():
    assert len(TEXT_TASKS) == 12
    for name in TEXT_TASKS.names():
        task = make_text_task(name)
        assert isinstance(task, TextTask) and task.name == name
        p = task.generate(0, 1)
        assert task.verify(p, p.solution) == 1.0
        assert prompt_text(task, p) == task.prompt(p) + "\n"


def test_a_misspelt_task_is_refused_naming_the_valid_ones():
    for refuse in (check_text_task, make_text_task):
        with pytest.raises(RegistryError, match="countdown") as e:
            refuse("countdwn")
        assert "arithmetic" in str(e.value) and "multiple_choice" in str(e.value)
    assert check_text_task("rg/leg_counting") == "rg/leg_counting"


def test_reasoning_gym_tasks_come_through_their_entry_point():
    task = make_text_task("rg/leg_counting")  # building it needs no reasoning-gym
    assert isinstance(task, TextTask) and task.name == "rg/leg_counting"


def test_the_contract_declares_what_the_core_calls():
    assert TextTask.__abstractmethods__ == {"generate", "prompt", "extract", "score", "verify", "format_reward"}


def test_the_text_core_imports_no_task_module():
    # Listing and checking names, and importing every text module of the core, must leave `tasks` unimported.
    code = (
        "import sys\n"
        "import vla_rl.text_tasks as t, vla_rl.rollout.text, vla_rl.policies.lm.tokenization_lm\n"
        "import vla_rl.trainers.text_grpo, vla_rl.trainers.text_eval, vla_rl.trainers.text_rlccf\n"
        "import vla_rl.trainers.text_quickstart, vla_rl.trainers.text_sft, vla_rl.trainers.text_entropy\n"
        "t.check_text_task('countdown'); t.TEXT_TASKS.names()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tasks', 'sims', 'robots')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

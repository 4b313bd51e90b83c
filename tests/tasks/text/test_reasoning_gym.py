import sys
import types

import pytest

from tasks.text import reasoning_gym as rg_adapter
from vla_rl.availability import DependencyNotInstalled
from vla_rl.text_tasks import make_text_task


def test_missing_reasoning_gym_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import fails as if not installed
    rg_adapter._dataset.cache_clear()
    task = make_text_task("rg/leg_counting")  # building the task needs nothing
    assert task.name == "rg/leg_counting"
    with pytest.raises(DependencyNotInstalled) as e:
        task.generate(0, 1)
    assert "pip install 'vla-rl[reasoning-gym]'" in str(e.value)
    assert isinstance(e.value, ImportError)


def test_adapter_uses_the_dataset_and_its_scorer(monkeypatch):
    """A stand-in for reasoning_gym with its API shape: create_dataset(name, seed, size) -> indexable
    dataset with score_answer(answer=, entry=)."""
    calls = []

    class Dataset:
        def __init__(self, seed):
            self.entry = {"question": f"2 + {seed % 7}?", "answer": str(2 + seed % 7), "metadata": {"seed": seed}}

        def __getitem__(self, i):
            return self.entry

        def score_answer(self, answer, entry):
            return 1.0 if answer == entry["answer"] else 0.0

    def create_dataset(name, seed, size, **config):
        calls.append((name, seed, size, config))
        return Dataset(seed)

    monkeypatch.setitem(sys.modules, "reasoning_gym", types.SimpleNamespace(create_dataset=create_dataset))
    rg_adapter._dataset.cache_clear()
    try:
        task = make_text_task("rg/adding", max_value=9)
        p = task.generate(3, 2)
        assert calls[0] == ("adding", 3002, 1, {"max_value": 9})
        assert p.question == "2 + 6?" and p.answer == "8" and p.meta["metadata"] == {"seed": 3002}
        assert task.verify(p, p.solution) == 1.0 and task.verify(p, r"\boxed{9}") == 0.0
    finally:
        rg_adapter._dataset.cache_clear()

"""The text-task contract the core relies on, and the registry of text tasks.

A text task generates a `Problem` from ``(seed, difficulty)``, writes its prompt, extracts a model's final
answer and scores it. The core (rollouts, trainers, the tokenizer corpus) calls only what `TextTask` declares
here; the task families themselves live in ``tasks/text`` and implement this contract.

The core never imports ``tasks``: `TEXT_TASKS` maps each name to a ``"package.module:Class"`` entry-point string,
imported on first use (the Gymnasium ``envs/__init__.py`` idea), so listing or checking names imports nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from vla_rl.registry import Registry, resolve_entry_point


@dataclass(frozen=True)
class Problem:
    """One generated problem. ``meta`` holds what the verifier needs (JSON-serialisable)."""

    task: str
    seed: int
    difficulty: int
    question: str
    answer: str
    solution: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for JSONL logs)."""
        return asdict(self)


class TextTask(ABC):
    """What the core calls on a text task. Same ``(seed, difficulty)``, same problem; a problem's ``solution``
    is a worked reference that `verify` scores 1.0."""

    name: ClassVar[str] = "text"
    max_difficulty: ClassVar[int] = 5

    @abstractmethod
    def generate(self, seed: int, difficulty: int = 1) -> Problem:
        """The problem for ``(seed, difficulty)``; difficulty runs from 1 (easy) to `max_difficulty`."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The user prompt: the question and how to mark the final answer."""

    @abstractmethod
    def extract(self, text: str | None) -> str | None:
        """The final answer in a model output; None when there is none."""

    @abstractmethod
    def score(self, problem: Problem, answer: str) -> float:
        """Score an already extracted answer in [0, 1]."""

    @abstractmethod
    def verify(self, problem: Problem, answer_text: str | None) -> float:
        """Extract the answer from a model output and score it, in [0, 1]; 0.0 when there is no answer."""

    @abstractmethod
    def format_reward(self, text: str | None) -> float:
        """1.0 when the output marks its final answer in the asked format, else 0.0."""


def prompt_text(task: TextTask, problem: Problem) -> str:
    """The prompt the LM policy reads for ``problem`` (the task's prompt and a newline): the rollouts, SFT and
    the tokenizer corpus all format prompts here."""
    return task.prompt(problem) + "\n"


TEXT_TASKS: Registry[type[TextTask]] = Registry("text task")
TEXT_TASKS.register("arithmetic", "tasks.text.generators:Arithmetic")
TEXT_TASKS.register("countdown", "tasks.text.generators:Countdown")
TEXT_TASKS.register("game24", "tasks.text.generators:Game24")
TEXT_TASKS.register("sorting", "tasks.text.generators:Sorting")
TEXT_TASKS.register("linear_equation", "tasks.text.generators:LinearEquation")
TEXT_TASKS.register("modular_arithmetic", "tasks.text.generators:ModularArithmetic")
TEXT_TASKS.register("sudoku4", "tasks.text.generators:Sudoku4")
TEXT_TASKS.register("knights_knaves", "tasks.text.generators:KnightsKnaves")
TEXT_TASKS.register("shortest_path", "tasks.text.generators:ShortestPath")
TEXT_TASKS.register("string_manipulation", "tasks.text.generators:StringManipulation")
TEXT_TASKS.register("unit_conversion", "tasks.text.generators:UnitConversion")
TEXT_TASKS.register("multiple_choice", "tasks.text.generators:MultipleChoice")

REASONING_GYM_PREFIX = "rg/"
REASONING_GYM_ENTRY_POINT = "tasks.text.reasoning_gym:ReasoningGymTask"  # called with the dataset name


def check_text_task(name: str) -> str:
    """``name`` if it is a registered text task or ``rg/<dataset>``; else the registry's error, which lists the
    valid names. Imports nothing."""
    if not name.startswith(REASONING_GYM_PREFIX) and name not in TEXT_TASKS:
        TEXT_TASKS.get(name)  # raises, naming the registered tasks
    return name


def make_text_task(name: str, **kwargs: Any) -> TextTask:
    """Build the task registered as ``name``; ``rg/<dataset>`` wraps a reasoning-gym dataset."""
    if name.startswith(REASONING_GYM_PREFIX):
        return resolve_entry_point(REASONING_GYM_ENTRY_POINT)(name[len(REASONING_GYM_PREFIX):], **kwargs)
    return TEXT_TASKS.get(name)(**kwargs)

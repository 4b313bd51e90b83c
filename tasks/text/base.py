"""The base class of the built-in text tasks, in the spirit of InternBootcamp's bootcamps: a task generates a
`Problem` from ``(seed, difficulty)``, writes the prompt, extracts the model's final answer and verifies it.

`ProceduralTextTask` implements the core's contract (`vla_rl.text_tasks.TextTask`, which also defines `Problem`).
Same ``(seed, difficulty)``, same problem: every generator draws from ``random.Random(seed * 1000 +
difficulty)`` only. A problem's ``solution`` is a short worked reference ending in ``\\boxed{answer}``, and
``task.verify(problem, problem.solution) == 1.0`` holds for every built-in task (tested).
"""

from __future__ import annotations

import random
from abc import abstractmethod
from typing import Any, ClassVar

from tasks.text.extract import extract_answer, has_explicit_answer
from vla_rl.text_tasks import Problem, TextTask


def seeded_rng(seed: int, difficulty: int) -> random.Random:
    """The one RNG a generator may use: ``random.Random(seed * 1000 + difficulty)``."""
    return random.Random(seed * 1000 + difficulty)


class ProceduralTextTask(TextTask):
    """A procedurally generated, automatically verified text-reasoning task.

    Subclasses set ``name`` and implement `_generate` (draw a problem from the given RNG) and `score`
    (check an already extracted answer). `verify` = `extract` + `score`, clipped to [0, 1].
    """

    description: ClassVar[str] = ""
    answer_format: ClassVar[str] = ""  # e.g. "a comma-separated list", shown in the prompt

    def generate(self, seed: int, difficulty: int = 1) -> Problem:
        """The problem for ``(seed, difficulty)``; difficulty runs from 1 (easy) to `max_difficulty`."""
        if not 1 <= difficulty <= self.max_difficulty:
            raise ValueError(f"{self.name}: difficulty must be in [1, {self.max_difficulty}], got {difficulty}")
        return self._generate(seeded_rng(seed, difficulty), seed, difficulty)

    @abstractmethod
    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        """Draw one problem using only ``rng``."""

    def problem(self, seed: int, difficulty: int, question: str, answer: str, solution: str, **meta: Any) -> Problem:
        """Build a `Problem` of this task (solution gets its ``\\boxed{answer}`` appended if missing)."""
        if "\\boxed{" not in solution:
            solution = f"{solution}\nFinal answer: \\boxed{{{answer}}}"
        return Problem(self.name, seed, difficulty, question, answer, solution, dict(meta))

    def prompt(self, problem: Problem) -> str:
        """The user prompt: the question and how to mark the final answer."""
        fmt = f" Give it as {self.answer_format}." if self.answer_format else ""
        return (
            f"{problem.question}\n\nThink step by step, then give your final answer inside \\boxed{{}} "
            f"(or between <answer> and </answer>).{fmt}"
        )

    def extract(self, text: str | None) -> str | None:
        """The final answer in a model output (see `tasks.text.extract.extract_answer`)."""
        return extract_answer(text)

    def verify(self, problem: Problem, answer_text: str | None) -> float:
        """Extract the answer from a model output and score it; 0.0 when there is no answer."""
        answer = self.extract(answer_text)
        if answer is None:
            return 0.0
        return min(1.0, max(0.0, float(self.score(problem, answer))))

    def format_reward(self, text: str | None) -> float:
        """1.0 when the output marks its final answer with ``\\boxed{}`` or ``<answer>``, else 0.0."""
        return 1.0 if has_explicit_answer(text) else 0.0

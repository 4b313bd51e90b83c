"""Physics-olympiad exam grading in the way of HiPhO (Yu et al. 2025, arXiv:2509.07894).

Exam files use HiPhO's JSON layout (checked against github.com/SciYu/HiPhO ``data/*.json``): a JSON list
whose first element holds the exam information (``{"information": "...constants..."}``), then one object
per problem with ``id``, ``context``, ``question``, ``marking`` (a list of marking schemes, each a list of
criterion strings such as ``"Award 0.5 pt if ... Otherwise, award 0 pt."``; a flat list is one scheme),
``answer`` (list of sub-answers, usually ``"\\boxed{...}"``), ``answer_type`` (``Expression``, ``Numerical
Value``, ``Multiple Choice``, ``Equation``, ``Open-Ended``, ``Inequality``), ``unit`` (list, ``null`` where
none), ``points`` (per sub-answer; HiPhO's F=MA files spell it ``point``) and ``modality``; ``field``,
``source`` and ``image_question`` are optional.

Grading, per problem:

* **answer level**: each sub-answer earns its points when one of the model's ``\\boxed{}`` answers matches
  it (each box is used once): numbers within a relative tolerance (an interval ``[lo, hi]`` reference is a
  range), converted through `tasks.text.units` when the model gives a unit (an unknown or wrong-dimension
  unit scores 0); expressions and equations by `tasks.text.equivalence` (math-verify, units kept); multiple
  choice by letters.
  Open-ended and inequality answers cannot be checked by rules and earn 0 here.
* **step level**: every criterion of every marking scheme is judged by a `StepJudge` (the rule-based
  `RuleJudge` by default; an LLM judge plugs in through the same protocol); a scheme scores the sum of its
  criteria, the problem the best scheme (HiPhO takes the best of several official schemes, e.g. EuPhO).
* the problem scores ``max(answer level, step level)``, capped at its points.

The exam total maps to a medal through the official thresholds in `MEDAL_THRESHOLDS`
(score >= threshold earns the medal).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.text.equivalence import is_equivalent, numbers_close
from tasks.text.extract import all_boxed, clean_answer, extract_answer
from tasks.text.units import convert, parse_quantity, parse_unit

ANSWER_TYPES = ("Expression", "Numerical Value", "Multiple Choice", "Equation", "Open-Ended", "Inequality")

# Official gold / silver / bronze thresholds of each exam, on the exam's own point scale (as used by HiPhO).
MEDAL_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "IPhO 2025": (19.7, 12.1, 7.2),
    "IPhO 2024": (20.8, 11.1, 3.6),
    "APhO 2025": (23.3, 18.7, 13.1),
    "EuPhO 2025": (16.5, 9.8, 5.8),
    "EuPhO 2024": (20.4, 14.2, 8.9),
    "NBPhO 2025": (28.6, 20.1, 15.2),
    "NBPhO 2024": (26.5, 19.4, 13.5),
    "PanPhO 2025": (41.5, 28.5, 14.5),
    "PanPhO 2024": (52.0, 37.5, 16.0),
    "PanMechanics 2025": (52.0, 36.0, 20.0),
    "PanMechanics 2024": (51.0, 26.0, 12.0),
    "F=MA 2025": (15.0, 11.0, 9.0),
    "F=MA 2024": (14.0, 12.0, 10.0),
}
MEDALS = ("gold", "silver", "bronze")
MAX_OUTPUT_CHARS = 200_000  # model outputs are graded on their last 200k characters
MAX_BOXES = 16  # at most this many boxed answers (the last ones) are compared with the sub-answers


class ExamFormatError(ValueError):
    """An exam or answers file that does not follow the expected layout (the message names file and item)."""


# --- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One marking criterion and the points it awards."""

    text: str
    points: float


@dataclass(frozen=True)
class ExamProblem:
    """One problem of an exam (one HiPhO item); sub-answer lists are aligned."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_types: tuple[str, ...]
    units: tuple[str | None, ...]
    points: tuple[float, ...]
    marking: tuple[tuple[Criterion, ...], ...] = ()
    modality: str = "text-only"
    field: str = ""
    source: str = ""

    @property
    def max_points(self) -> float:
        """The problem's full marks (sum of its sub-answer points)."""
        return sum(self.points)

    @property
    def references(self) -> tuple[str, ...]:
        """The sub-answers without their ``\\boxed{}`` wrapper."""
        return tuple(_unbox(a) for a in self.answers)


@dataclass(frozen=True)
class Exam:
    """An exam: its information element and its problems."""

    name: str
    information: str
    problems: tuple[ExamProblem, ...]
    path: str = ""

    @property
    def max_score(self) -> float:
        """Full marks of the exam."""
        return sum(p.max_points for p in self.problems)


def _unbox(answer: str) -> str:
    boxes = all_boxed(answer)
    return " ".join(boxes) if boxes else clean_answer(answer)


# --- loading ------------------------------------------------------------------------------------------

_POINTS_RE = re.compile(r"award\s+(\d+(?:\.\d+)?)\s*(?:pts?|points?|marks?)\b", re.IGNORECASE)


def _criteria(raw: Any, where: str, total: float) -> tuple[tuple[Criterion, ...], ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise ExamFormatError(f"{where}: 'marking' must be a list of marking schemes")
    schemes = raw if all(isinstance(s, list) for s in raw) else [raw]
    out = []
    for k, scheme in enumerate(schemes, 1):
        texts: list[str] = []
        explicit: list[float | None] = []
        for c in scheme:
            if isinstance(c, str):
                m = _POINTS_RE.search(c)
                texts.append(c)
                explicit.append(float(m.group(1)) if m else None)
            elif isinstance(c, dict) and isinstance(c.get("criterion", c.get("text")), str):
                pts = c.get("points")
                if pts is not None and not isinstance(pts, int | float):
                    raise ExamFormatError(f"{where}: marking scheme {k}: criterion points must be a number")
                texts.append(c.get("criterion", c.get("text")))
                explicit.append(None if pts is None else float(pts))
            else:
                raise ExamFormatError(
                    f"{where}: marking scheme {k}: each criterion must be a string or "
                    "{'criterion': str, 'points': number}"
                )
        missing = [i for i, p in enumerate(explicit) if p is None]
        share = max(total - sum(p for p in explicit if p is not None), 0.0) / len(missing) if missing else 0.0
        out.append(tuple(Criterion(t, share if p is None else p) for t, p in zip(texts, explicit, strict=True)))
    return tuple(out)


def _problem(raw: Any, where: str) -> ExamProblem:
    if not isinstance(raw, dict):
        raise ExamFormatError(f"{where}: must be a JSON object")
    for key in ("id", "question", "answer", "answer_type", "unit"):
        if key not in raw:
            raise ExamFormatError(f"{where}: missing {key!r}")
    points_key = "points" if "points" in raw else "point" if "point" in raw else None
    if points_key is None:
        raise ExamFormatError(f"{where}: missing 'points'")
    if not isinstance(raw["id"], str) or not raw["id"]:
        raise ExamFormatError(f"{where}: 'id' must be a non-empty string")
    for key in ("question", "context"):
        if not isinstance(raw.get(key, ""), str):
            raise ExamFormatError(f"{where}: {key!r} must be a string")
    answers, types, units, points = raw["answer"], raw["answer_type"], raw["unit"], raw[points_key]
    for key, value in (("answer", answers), ("answer_type", types), ("unit", units), (points_key, points)):
        if not isinstance(value, list) or not value:
            raise ExamFormatError(f"{where}: {key!r} must be a non-empty list")
    if not len(answers) == len(types) == len(units) == len(points):
        raise ExamFormatError(
            f"{where}: 'answer', 'answer_type', 'unit' and {points_key!r} must have the same "
            f"length (got {len(answers)}, {len(types)}, {len(units)}, {len(points)})"
        )
    if not all(isinstance(a, str) for a in answers):
        raise ExamFormatError(f"{where}: every 'answer' must be a string")
    bad_type = next((t for t in types if t not in ANSWER_TYPES), None)
    if bad_type is not None:
        raise ExamFormatError(f"{where}: unknown answer_type {bad_type!r}; valid: {', '.join(ANSWER_TYPES)}")
    if not all(u is None or isinstance(u, str) for u in units):
        raise ExamFormatError(f"{where}: every 'unit' must be a string or null")
    if not all(isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) and p >= 0 for p in points):
        raise ExamFormatError(f"{where}: every {points_key!r} must be a non-negative number")
    total = float(sum(points))
    return ExamProblem(
        id=raw["id"],
        context=raw.get("context") or "",
        question=raw["question"],
        answers=tuple(answers),
        answer_types=tuple(types),
        units=tuple(u or None for u in units),
        points=tuple(float(p) for p in points),
        marking=_criteria(raw.get("marking"), where, total),
        modality=str(raw.get("modality", "text-only")),
        field=str(raw.get("field", "")),
        source=str(raw.get("source", "")),
    )


def load_exam(path: str | Path) -> Exam:
    """Read and validate a HiPhO-style exam file. Errors name the file and the problem
    (``exam.json problem 2: missing 'answer'``); problems are numbered from 1 after the information."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ExamFormatError(f"{path.name}: cannot read: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExamFormatError(f"{path.name}: not valid JSON: {e}") from e
    if not isinstance(data, list) or len(data) < 2:
        raise ExamFormatError(f"{path.name}: expected a JSON list of the exam information followed by problems")
    info = data[0]
    if not isinstance(info, dict) or "question" in info:
        raise ExamFormatError(
            f'{path.name}: the first element must hold the exam information (e.g. {{"information": "constants..."}})'
        )
    problems = tuple(_problem(raw, f"{path.name} problem {k}") for k, raw in enumerate(data[1:], 1))
    seen: set[str] = set()
    for k, p in enumerate(problems, 1):
        if p.id in seen:
            raise ExamFormatError(f"{path.name} problem {k}: duplicate id {p.id!r}")
        seen.add(p.id)
    name = next((p.source for p in problems if p.source), path.stem)
    return Exam(name=name, information=str(info.get("information", "")), problems=problems, path=str(path))


def load_answers(path: str | Path, exam: Exam | None = None) -> dict[str, str]:
    """Read model outputs from JSONL: one ``{"id": <problem id>, "output": <model text>}`` per line.
    With ``exam``, ids must belong to it. Errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ExamFormatError(f"{path.name}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ExamFormatError(f"{path.name}: not UTF-8 text") from e
    known = {p.id for p in exam.problems} if exam else None
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ExamFormatError(f"{where}: not valid JSON: {e.msg}") from e
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("output"), str):
            raise ExamFormatError(f'{where}: expected {{"id": str, "output": str}}')
        if known is not None and row["id"] not in known:
            raise ExamFormatError(f"{where}: unknown problem id {row['id']!r}")
        if row["id"] in out:
            raise ExamFormatError(f"{where}: duplicate answer for {row['id']!r}")
        out[row["id"]] = row["output"]
    return out


# --- answer level -------------------------------------------------------------------------------------

_INTERVAL_RE = re.compile(r"\[\s*([-+]?[\d.eE+-]+)\s*,\s*([-+]?[\d.eE+-]+)\s*\]")
_LETTER_RE = re.compile(r"(?<![A-Za-z\\])([A-J])(?![A-Za-z])")


def _numeric_match(candidate: str, reference: str, unit: str | None, rel_tol: float) -> bool:
    interval = _INTERVAL_RE.fullmatch(reference.strip())
    ref_value: float | None = None
    if interval:
        lo, hi = sorted((float(interval.group(1)), float(interval.group(2))))
    else:
        q = parse_quantity(reference)
        if q is None:
            return is_equivalent(candidate, reference, rel_tol=rel_tol)
        ref_value = q[0]
    got = parse_quantity(candidate)
    if got is None:  # e.g. 2\sqrt{2}: compare as numbers/expressions (no unit)
        if ref_value is None:
            return False
        return is_equivalent(candidate, repr(ref_value), rel_tol=rel_tol)
    value, cand_unit = got
    if cand_unit and unit:
        converted = convert(value, cand_unit, unit)
        if converted is None:
            return False
        value = converted
    elif cand_unit and parse_unit(cand_unit) is None:
        return False
    if ref_value is None:
        return lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9)
    return numbers_close(value, ref_value, rel_tol, abs_tol=0.0)


def answer_matches(
    candidate: str, reference: str, answer_type: str, unit: str | None = None, rel_tol: float = 1e-2
) -> bool:
    """Does one boxed model answer match one reference sub-answer of the given HiPhO answer type?"""
    cand, ref = clean_answer(candidate), clean_answer(reference)
    if not cand or not ref:
        return False
    if cand.replace(" ", "") == ref.replace(" ", ""):
        return True
    if answer_type == "Numerical Value":
        return _numeric_match(cand, ref, unit, rel_tol)
    if answer_type in ("Expression", "Equation"):
        return is_equivalent(cand, ref, strict_units=True)  # HiPhO: a unit is part of the answer
    if answer_type == "Multiple Choice":
        letters = set(_LETTER_RE.findall(cand[:100]))
        return bool(letters) and letters == set(_LETTER_RE.findall(ref))
    return False  # Open-Ended, Inequality: left to the step-level judge


# --- step level ---------------------------------------------------------------------------------------


class StepJudge(Protocol):
    """Judges one marking criterion against a model output.

    ``judge`` returns the points awarded, between 0 and ``criterion.points``. An LLM judge implements the
    same method: prompt a grader model with the problem's context and question, the criterion text
    (HiPhO's criteria are written as grader instructions, "Award 0.5 pt if ... Otherwise, award 0 pt.")
    and the output; parse the awarded points from its reply; clip to ``[0, criterion.points]``; and
    cache by (problem id, criterion, output hash) so that re-grading is free.
    """

    def judge(self, criterion: Criterion, problem: ExamProblem, output: str) -> float:
        """Points awarded for ``criterion`` given the model ``output`` to ``problem``."""
        ...


_SQUASH = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\displaystyle", ""),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\,", ""),
    ("\\;", ""),
    ("\\!", ""),
    ("\\ ", ""),
    ("{", ""),
    ("}", ""),
    ("$", ""),
    ("\\cdot", "*"),
    ("\\times", "*"),
)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STOPWORDS = {
    "answer",
    "correctly",
    "correct",
    "states",
    "state",
    "obtains",
    "obtain",
    "derives",
    "derive",
    "writes",
    "write",
    "which",
    "where",
    "their",
    "there",
    "these",
    "those",
    "about",
    "using",
    "should",
    "would",
    "could",
    "explicitly",
    "otherwise",
    "award",
    "points",
    "partial",
    "includes",
    "include",
    "shows",
    "given",
    "gives",
    "with",
    "from",
    "that",
    "this",
    "justification",
}


def _squash(s: str) -> str:
    for a, b in _SQUASH:
        s = s.replace(a, b)
    return "".join(s.split())


def _condition(text: str) -> str:
    """The condition of "Award X pt if <condition>. Otherwise/Partial points ..."."""
    m = re.search(r"\bif\b", text)
    cond = text[m.end() :] if m else text
    return re.split(r"\b(?:Otherwise|Partial points)\b", cond, maxsplit=1)[0]


@dataclass
class RuleJudge:
    """Rule-based step judge (all or nothing per criterion).

    The evidence of a criterion is its LaTeX math (``$...$``) in the condition: for ``lhs = rhs`` the
    right-hand side, or the whole span when that side is a single character. Numeric evidence
    (``$t = 2.02 s$``) is present when the output contains a number within ``rel_tol``; symbolic evidence
    when its whitespace/brace-free form occurs in the output's. All evidence must be present. A criterion
    without usable math needs its quoted phrases (``'internal energy'``) or, failing those, two thirds of
    its content words (5+ letters) to appear in the output.
    """

    rel_tol: float = 1e-2

    def judge(self, criterion: Criterion, problem: ExamProblem, output: str) -> float:
        """Points for ``criterion``: all of them when its evidence is found in ``output``, else 0."""
        return criterion.points if self.satisfied(criterion.text, output) else 0.0

    def satisfied(self, text: str, output: str) -> bool:
        """Is the evidence of criterion ``text`` present in ``output``?"""
        cond = _condition(text)
        spans = re.findall(r"\$([^$]{1,300})\$", cond)
        evidence = []
        for span in spans:
            side = span.replace("\\approx", "=").split("=")[-1].strip()
            evidence.append(side if len(_squash(side)) >= 2 else span)
        evidence = [e for e in evidence if len(_squash(e)) >= 2]
        squashed = _squash(output)
        if evidence:
            return all(self._present(e, output, squashed) for e in evidence)
        low = output.lower()
        quoted = re.findall(r"['\"“‘]([^'\"”’]{2,60})['\"”’]", cond)
        if quoted:
            return all(q.lower() in low for q in quoted)
        words = {w.lower() for w in re.findall(r"[A-Za-z]{5,}", cond)} - _STOPWORDS
        if len(words) < 2:
            return False
        return sum(w in low for w in words) * 3 >= 2 * len(words)

    def _present(self, evidence: str, output: str, squashed: str) -> bool:
        q = parse_quantity(evidence)
        if q is not None and (not q[1] or parse_unit(q[1]) is not None):
            value = q[0]
            for m in _NUMBER_RE.finditer(output):
                try:
                    if numbers_close(float(m.group(0)), value, self.rel_tol, abs_tol=1e-12):
                        return True
                except (ValueError, OverflowError):
                    continue
            return False
        return _squash(evidence) in squashed


# --- grading ------------------------------------------------------------------------------------------


@dataclass
class ProblemGrade:
    """Scores of one problem: answer level, step level (best scheme), final, and per-item detail."""

    id: str
    max_points: float
    answer_score: float
    step_score: float
    score: float
    sub_answers: list[bool] = field(default_factory=list)
    criteria: list[float] = field(default_factory=list)  # points per criterion of the best scheme
    answered: bool = True


@dataclass
class ExamGrade:
    """An exam's grades, total and medal (None below bronze or when the exam has no thresholds)."""

    exam: str
    problems: list[ProblemGrade]
    total: float
    max_total: float
    medal: str | None
    thresholds: tuple[float, float, float] | None


def _canonical(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def thresholds_for(exam_name: str) -> tuple[float, float, float] | None:
    """Official (gold, silver, bronze) thresholds for e.g. ``"IPhO 2025"`` or ``"IPhO_2025"``; None if unknown."""
    wanted = _canonical(exam_name)
    return next((t for name, t in MEDAL_THRESHOLDS.items() if _canonical(name) == wanted), None)


def medal_for(score: float, exam_name: str) -> str | None:
    """``"gold"``, ``"silver"``, ``"bronze"`` (score >= threshold) or None."""
    thresholds = thresholds_for(exam_name)
    if thresholds is None:
        return None
    return next((m for m, t in zip(MEDALS, thresholds, strict=True) if score >= t - 1e-9), None)


def grade_problem(
    problem: ExamProblem, output: str | None, judge: StepJudge | None = None, rel_tol: float = 1e-2
) -> ProblemGrade:
    """Grade one model output against one problem (see the module docstring for the rules)."""
    if output is None:
        return ProblemGrade(
            problem.id, problem.max_points, 0.0, 0.0, 0.0, [False] * len(problem.answers), answered=False
        )
    output = output[-MAX_OUTPUT_CHARS:]
    boxes = all_boxed(output, max_chars=MAX_OUTPUT_CHARS)[-MAX_BOXES:]
    if not boxes:
        last = extract_answer(output, fallback=False)
        boxes = [last] if last else []
    used: set[int] = set()
    matched = []
    for ref, kind, unit in zip(problem.references, problem.answer_types, problem.units, strict=True):
        hit = next(
            (j for j, box in enumerate(boxes) if j not in used and answer_matches(box, ref, kind, unit, rel_tol)), None
        )
        if hit is not None:
            used.add(hit)
        matched.append(hit is not None)
    answer_score = sum(p for p, ok in zip(problem.points, matched, strict=True) if ok)
    judge = judge or RuleJudge(rel_tol=rel_tol)
    schemes = [[min(max(float(judge.judge(c, problem, output)), 0.0), c.points) for c in s] for s in problem.marking]
    best = max(schemes, key=sum, default=[])
    step_score = min(sum(best), problem.max_points)
    score = min(max(answer_score, step_score), problem.max_points)
    return ProblemGrade(problem.id, problem.max_points, answer_score, step_score, score, matched, best)


def grade_exam(
    exam: Exam,
    outputs: dict[str, str],
    judge: StepJudge | None = None,
    exam_name: str | None = None,
    rel_tol: float = 1e-2,
) -> ExamGrade:
    """Grade every problem (a missing output scores 0), sum the exam and look up the medal for
    ``exam_name`` (default: the exam's own name, e.g. its problems' ``source``)."""
    grades = [grade_problem(p, outputs.get(p.id), judge, rel_tol) for p in exam.problems]
    total = round(sum(g.score for g in grades), 6)
    name = exam_name or exam.name
    return ExamGrade(name, grades, total, exam.max_score, medal_for(total, name), thresholds_for(name))

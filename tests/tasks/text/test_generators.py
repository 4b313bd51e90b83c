import json
import string
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.text.generators import (
    UnsafeArithmetic,
    knights_solutions,
    safe_arith,
    solve_24,
    sudoku_valid,
)
from vla_rl.registry import RegistryError
from vla_rl.text_tasks import TEXT_TASKS, Problem, TextTask, make_text_task


def _swap_first_unequal(items: list) -> list:
    i = next(i for i in range(len(items) - 1) if items[i] != items[i + 1])
    items = list(items)
    items[i], items[i + 1] = items[i + 1], items[i]
    return items


def _wrong_sudoku(p: Problem) -> str:
    rows = [list(r) for r in p.answer.split()]
    rows[0][0], rows[0][1] = rows[0][1], rows[0][0]  # the row stays a permutation, two columns break
    return " ".join("".join(r) for r in rows)


def _wrong_knights(p: Problem) -> str:
    return p.answer.replace("A: knight", "A: KNAVE").replace("A: knave", "A: knight").replace("KNAVE", "knave")


def _wrong_string(p: Problem) -> str:
    return p.answer + "x" if not p.answer.isdigit() else str(int(p.answer) + 1)


def _wrong_choice(p: Problem) -> str:
    letters = string.ascii_uppercase[: p.meta["n_options"]]
    return letters[(letters.index(p.answer) + 1) % len(letters)]


# a well-formed but wrong answer for each task
PERTURB = {
    "arithmetic": lambda p: str(int(p.answer) + 1),
    "countdown": lambda p: f"({p.answer}) + 1",
    "game24": lambda p: f"({p.answer}) * 1",  # still 24, but uses a number that is not given
    "sorting": lambda p: ", ".join(map(str, _swap_first_unequal(p.meta["values"]))),
    "linear_equation": lambda p: f"x = {Fraction(p.answer) + Fraction(1, 3)}",
    "modular_arithmetic": lambda p: str((int(p.answer) + 1) % p.meta["m"]),
    "sudoku4": _wrong_sudoku,
    "knights_knaves": _wrong_knights,
    "shortest_path": lambda p: str(int(p.answer) + 1),
    "string_manipulation": _wrong_string,
    "unit_conversion": lambda p: f"{p.meta['value'] * 1.05:.6g} {p.meta['unit']}",
    "multiple_choice": _wrong_choice,
}


def test_registry_has_every_task():
    assert len(TEXT_TASKS) >= 12
    assert set(PERTURB) == set(TEXT_TASKS.names())
    with pytest.raises(RegistryError, match="countdown"):
        TEXT_TASKS.get("countdwn")
    for name in TEXT_TASKS.names():
        task = make_text_task(name)
        assert isinstance(task, TextTask) and task.name == name


@pytest.mark.parametrize("name", sorted(PERTURB))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), difficulty=st.integers(1, 5))
def test_solution_verifies_and_perturbation_fails(name, seed, difficulty):
    task = make_text_task(name)
    p = task.generate(seed, difficulty)
    assert p.task == name and p.seed == seed and p.difficulty == difficulty
    assert p.solution.rstrip().endswith("}") and "\\boxed{" in p.solution
    assert task.verify(p, p.solution) == 1.0
    assert task.verify(p, f"<answer>{p.answer}</answer>") == 1.0
    assert task.format_reward(p.solution) == 1.0
    wrong = PERTURB[name](p)
    assert task.verify(p, f"\\boxed{{{wrong}}}") == 0.0, wrong
    assert task.verify(p, "I give up.") == 0.0
    assert task.generate(seed, difficulty) == p  # same seed, same problem
    json.dumps(p.to_dict())  # loggable


@pytest.mark.parametrize("name", sorted(PERTURB))
def test_prompt_and_difficulty_range(name):
    task = make_text_task(name)
    p = task.generate(0, 1)
    prompt = task.prompt(p)
    assert p.question in prompt and "\\boxed{}" in prompt and "<answer>" in prompt
    with pytest.raises(ValueError, match="difficulty"):
        task.generate(0, 0)
    with pytest.raises(ValueError, match="difficulty"):
        task.generate(0, task.max_difficulty + 1)
    assert task.format_reward("the answer is 3") == 0.0


def test_difficulty_scales_the_problems():
    sorting = make_text_task("sorting")
    assert len(sorting.generate(1, 1).meta["values"]) < len(sorting.generate(1, 5).meta["values"])
    graphs = make_text_task("shortest_path")
    assert graphs.generate(1, 1).meta["n"] < graphs.generate(1, 5).meta["n"]
    kk = make_text_task("knights_knaves")
    assert kk.generate(1, 1).meta["n"] == 2 and kk.generate(1, 5).meta["n"] == 4
    seeds = range(20)
    sudoku = make_text_task("sudoku4")
    blanks = [sum(v == 0 for row in sudoku.generate(s, d).meta["givens"] for v in row) for s in seeds for d in (1, 5)]
    assert all(b == 5 for b in blanks[::2]) and all(b == 13 for b in blanks[1::2])


def test_safe_arith():
    assert safe_arith("(3 + 5) * 7") == (56, [3, 5, 7])
    assert safe_arith("8 / (3 - 8 / 3) = 24")[0] == 24
    assert safe_arith(r"6 \times 4")[0] == 24 and safe_arith("6 × 4")[0] == 24
    for bad in [
        "__import__('os')",
        "2 ** 10",
        "x + 1",
        "1.5 + 2",
        "-3 + 5",
        "1 / 0",
        "(1 + 2",
        "",
        "9" * 10,
        "(" * 150 + "1" + ")" * 150,
        "1 + " * 60 + "1",
        "open('f')",
        "[1]",
    ]:
        with pytest.raises(UnsafeArithmetic):
            safe_arith(bad)


def _problem(task: str, answer: str, **meta) -> Problem:
    return Problem(task, 0, 1, "q", answer, f"\\boxed{{{answer}}}", meta)


def test_countdown_uses_each_number_at_most_once():
    task, p = make_text_task("countdown"), _problem("countdown", "2 * 5", numbers=[2, 3, 5], target=10)
    assert task.verify(p, r"\boxed{2 * 5}") == 1.0
    assert task.verify(p, r"\boxed{(3 - 2) * 2 * 5}") == 0.0  # 2 used twice
    assert task.verify(p, r"\boxed{5 + 5}") == 0.0
    assert task.verify(p, r"\boxed{2 * 5 * 1}") == 0.0  # 1 is not given
    assert task.verify(p, r"\boxed{2 * 5 = 10}") == 1.0
    assert task.verify(p, r"\boxed{__import__('os')}") == 0.0


def test_game24_uses_every_number_exactly_once():
    task, p = make_text_task("game24"), _problem("game24", "1 * 2 * 3 * 4", numbers=[1, 2, 3, 4], target=24)
    assert task.verify(p, r"\boxed{(1 + 2 + 3) * 4}") == 1.0
    assert task.verify(p, r"\boxed{4 * 3 * 2}") == 0.0  # 1 unused
    assert task.verify(p, r"\boxed{4 * 3 * 2 * 1 * 1}") == 0.0
    assert solve_24((3, 3, 8, 8)) is not None and solve_24((1, 1, 1, 1)) is None
    assert safe_arith(solve_24((3, 3, 8, 8)))[0] == 24  # needs a fraction: 8 / (3 - 8 / 3)


def test_knights_brute_force():
    # A: "We are both knaves." -> A is a knave and B a knight.
    stmts = [{"type": "and", "a": 0, "ka": False, "b": 1, "kb": False, "speaker": 0}]
    assert knights_solutions(stmts, 2) == [(False, True)]
    task, p = make_text_task("knights_knaves"), _problem("knights_knaves", "A: knave, B: knight", statements=stmts, n=2)
    assert task.verify(p, r"\boxed{A: knave, B: knight}") == 1.0
    assert task.verify(p, r"\boxed{A is a knave and B is a knight}") == 1.0
    assert task.verify(p, r"\boxed{A: knight, B: knight}") == 0.0
    assert task.verify(p, r"\boxed{A: knave}") == 0.0  # incomplete
    assert task.verify(p, r"\boxed{A: knave, A: knight, B: knight}") == 0.0  # contradictory


def test_sudoku_checks_validity_and_givens():
    good = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    assert sudoku_valid(good) and not sudoku_valid([[1, 2, 3, 4]] * 4)
    givens = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    task, p = make_text_task("sudoku4"), _problem("sudoku4", "1234 3412 2143 4321", givens=givens)
    assert task.verify(p, r"\boxed{1234 3412 2143 4321}") == 1.0
    assert task.verify(p, r"\boxed{1234\n3412\n2143\n4321}") == 1.0
    other = "2143 4321 1234 3412"  # valid, but contradicts the given 1 in the corner
    assert sudoku_valid([[int(c) for c in r] for r in other.split()])
    assert task.verify(p, f"\\boxed{{{other}}}") == 0.0
    assert task.verify(p, r"\boxed{1234 3412 2143}") == 0.0


def test_shortest_path_accepts_an_optimal_path():
    task = make_text_task("shortest_path")
    edges = [[0, 1, 1], [1, 3, 1], [0, 2, 1], [2, 3, 5], [0, 3, 4]]
    p = _problem("shortest_path", "2", edges=edges, n=4, length=2)
    assert task.verify(p, r"\boxed{2}") == 1.0
    assert task.verify(p, r"\boxed{A -> B -> D}") == 1.0
    assert task.verify(p, r"\boxed{A-C-D}") == 0.0  # a path, but length 6
    assert task.verify(p, r"\boxed{A -> D}") == 0.0  # length 4
    assert task.verify(p, r"\boxed{A -> B -> C -> D}") == 0.0  # no B-C edge
    generated = task.generate(7, 3)
    route = generated.solution.split("the path ")[1].split(" of length")[0]
    assert task.verify(generated, f"\\boxed{{{route}}}") == 1.0


def test_unit_conversion_checks_value_and_unit():
    task = make_text_task("unit_conversion")
    p = _problem("unit_conversion", "0.8889 m/s", value=3.2 / 3.6, unit="m/s")
    for ok in ["0.8889 m/s", "0.889", r"0.889\,\mathrm{m/s}", "3200 m/h", "v = 8.89e-1 m s^-1"]:
        assert task.verify(p, f"\\boxed{{{ok}}}") == 1.0, ok
    for bad in ["0.95 m/s", "0.8889 kg", "0.8889 furlongs", "3.2 km/h/s", "fast"]:
        assert task.verify(p, f"\\boxed{{{bad}}}") == 0.0, bad


def test_multiple_choice_letter_forms():
    task = make_text_task("multiple_choice")
    p = _problem("multiple_choice", "B", n_options=4)
    for ok in ["B", "(B)", "B.", "b", "Option B", "B) 42"]:
        assert task.verify(p, f"\\boxed{{{ok}}}") == 1.0, ok
    for bad in ["A", "E", "BC", "42"]:
        assert task.verify(p, f"\\boxed{{{bad}}}") == 0.0, bad


def test_multiple_choice_with_a_value_near_the_floor_still_has_every_option():
    """gcd 2 at difficulty 5 once looped forever: only 1..4 lay within the distractor spread of 2."""
    p = make_text_task("multiple_choice").generate(51, 5)
    assert p.solution.startswith("the value is 2,")
    options = [line.split(") ", 1)[1] for line in p.question.splitlines()[1:]]
    assert len(options) == len(set(options)) == 5

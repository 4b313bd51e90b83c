"""Built-in procedural text tasks; the core registers each by name in `vla_rl.text_tasks.TEXT_TASKS` as an
entry point (``"tasks.text.generators:Countdown"``), so nothing here registers itself on import.

Each task draws from ``random.Random(seed * 1000 + difficulty)`` only, scales with ``difficulty`` (1..5),
and ships a reference ``solution`` that its own verifier accepts. Verifiers never call eval(): arithmetic
answers go through `safe_arith`, an AST walker that allows integers and ``+ - * /`` only.

    >>> from vla_rl.text_tasks import make_text_task
    >>> task = make_text_task("countdown")
    >>> p = task.generate(seed=0, difficulty=2)
    >>> task.verify(p, p.solution)
    1.0
"""

from __future__ import annotations

import ast
import heapq
import itertools
import random
import re
import string
from collections import Counter
from fractions import Fraction
from typing import Any

from tasks.text.base import ProceduralTextTask
from tasks.text.equivalence import numbers_close, parse_number
from tasks.text.units import convert, parse_quantity, parse_unit
from vla_rl.text_tasks import Problem

MAX_EXPRESSION_CHARS = 200


# --- safe arithmetic ----------------------------------------------------------------------------------


class UnsafeArithmetic(ValueError):
    """An expression that is not integers combined with + - * / (or divides by zero)."""


_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_OP_SYMBOLS = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}


def safe_arith(expr: str, max_literal: int = 10**6) -> tuple[Fraction, list[int]]:
    """Evaluate ``expr`` made of non-negative integer literals, ``+ - * /`` and parentheses, exactly.

    Returns (value, the integer literals in order). ``×``, ``÷``, ``\\times``, ``\\cdot`` and ``\\div`` are
    accepted; a trailing ``= value`` is ignored. Anything else (names, calls, powers, unary minus, floats,
    more than `MAX_EXPRESSION_CHARS` characters) raises `UnsafeArithmetic`. Parsed with `ast`, never
    evaluated by Python.
    """
    if not isinstance(expr, str) or len(expr) > MAX_EXPRESSION_CHARS:
        raise UnsafeArithmetic("expression missing or too long")
    s = expr.split("=")[0]
    for a, b in (
        ("\\times", "*"),
        ("\\cdot", "*"),
        ("\\div", "/"),
        ("×", "*"),
        ("÷", "/"),
        ("−", "-"),
        ("\\left", ""),
        ("\\right", ""),
        ("$", ""),
    ):
        s = s.replace(a, b)
    if not s.strip() or re.search(r"[^0-9+\-*/() \t]", s):
        raise UnsafeArithmetic(f"only integers, + - * / and parentheses are allowed: {expr!r}")
    try:
        tree = ast.parse(s.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise UnsafeArithmetic(f"not an expression: {expr!r}") from e
    literals: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise UnsafeArithmetic("division by zero")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= max_literal:
            literals.append(node.value)
            return Fraction(node.value)
        raise UnsafeArithmetic(f"{type(node).__name__} is not allowed")

    try:
        return walk(tree), literals
    except RecursionError as e:
        raise UnsafeArithmetic("expression nested too deeply") from e


def _int_of(answer: str) -> int | None:
    value = parse_number(answer)
    return int(value) if value is not None and value.denominator == 1 else None


def _int_list(answer: str) -> list[int] | None:
    s = answer.strip().strip("[](){}").replace(";", ",")
    parts = [p for p in re.split(r"[,\s]+", s) if p]
    if not parts or len(parts) > 1000 or not all(re.fullmatch(r"[-+]?\d{1,12}", p) for p in parts):
        return None
    return [int(p) for p in parts]


def _combine_tree(rng: random.Random, leaves: list[int], ops: str) -> tuple[str, Fraction, list[str]]:
    """Randomly bracket ``leaves`` with ops from ``ops``: (expression, value, the evaluation steps)."""
    nodes = [(str(v), Fraction(v)) for v in leaves]
    steps = []
    while len(nodes) > 1:
        i = rng.randrange(len(nodes) - 1)
        op = rng.choice(ops)
        (ea, va), (eb, vb) = nodes[i], nodes[i + 1]
        value = _OPS[_OP_SYMBOLS[op]](va, vb)
        steps.append(f"{va if va >= 0 else f'({va})'} {op} {vb if vb >= 0 else f'({vb})'} = {value}")
        sub = f"{ea} {op} {eb}"
        nodes[i : i + 2] = [(f"({sub})" if len(nodes) > 2 else sub, value)]
    return nodes[0][0], nodes[0][1], steps


# --- tasks --------------------------------------------------------------------------------------------


class Arithmetic(ProceduralTextTask):
    """Evaluate an integer expression; difficulty adds operands and widens their range."""

    name = "arithmetic"
    answer_format = "an integer"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        hi = 10 * difficulty**2
        leaves = [rng.randint(1, hi) for _ in range(difficulty + 1)]
        expr, value, steps = _combine_tree(rng, leaves, "+-*")
        sol = "\n".join([*steps, f"So {expr} = {value}."])
        return self.problem(seed, difficulty, f"Compute {expr}.", str(value), sol, value=str(value))

    def score(self, problem: Problem, answer: str) -> float:
        """Exact value (fractions and decimals are parsed exactly)."""
        got = parse_number(answer)
        return float(got is not None and got == Fraction(problem.meta["value"]))


def _countdown_target(rng: random.Random, numbers: list[int], k: int) -> tuple[int, str] | None:
    picked = rng.sample(numbers, k)
    value, expr = Fraction(picked[0]), str(picked[0])
    for n in picked[1:]:
        options = [("+", value + n), ("*", value * n)]
        if value - n > 0:
            options.append(("-", value - n))
        if value % n == 0 and n > 1:
            options.append(("/", value / n))
        op, new = rng.choice(options)
        expr, value = f"({expr} {op} {n})", new
    if value.denominator != 1 or not 10 <= value <= 2000:
        return None
    return int(value), expr[1:-1] if expr.startswith("(") else expr


def _check_uses(literals: list[int], numbers: list[int], exactly: bool) -> bool:
    used, have = Counter(literals), Counter(numbers)
    return used == have if exactly else all(used[n] <= have[n] for n in used)


class Countdown(ProceduralTextTask):
    """Reach a target with the given numbers, each used at most once, and + - * / (TinyZero's Countdown)."""

    name = "countdown"
    answer_format = "an arithmetic expression"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        n = 3 + (difficulty + 1) // 2
        while True:
            small = [rng.randint(1, 10 if difficulty <= 2 else 25) for _ in range(n)]
            if difficulty >= 3:
                small[-1] = rng.choice([25, 50, 75, 100])
            found = _countdown_target(rng, small, min(n, 2 + difficulty // 2 + 1))
            if found:
                break
        target, expr = found
        q = (
            f"Using the numbers {small}, each at most once, and the operations + - * / (with parentheses), "
            f"write an expression that equals {target}."
        )
        sol = f"Try {expr}: it uses allowed numbers once each and evaluates to {target}.\n\\boxed{{{expr}}}"
        return self.problem(seed, difficulty, q, expr, sol, numbers=small, target=target)

    def score(self, problem: Problem, answer: str) -> float:
        """The expression equals the target and uses each given number at most once."""
        try:
            value, literals = safe_arith(answer)
        except UnsafeArithmetic:
            return 0.0
        ok = value == problem.meta["target"] and _check_uses(literals, problem.meta["numbers"], exactly=False)
        return float(ok)


def solve_24(numbers: tuple[int, ...], target: int = 24) -> str | None:
    """An expression using every number once with + - * / that equals ``target``, or None."""

    def rec(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i, j in itertools.combinations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            cands = [
                (a + b, f"({ea} + {eb})"),
                (a * b, f"({ea} * {eb})"),
                (a - b, f"({ea} - {eb})"),
                (b - a, f"({eb} - {ea})"),
            ]
            if b != 0:
                cands.append((a / b, f"({ea} / {eb})"))
            if a != 0:
                cands.append((b / a, f"({eb} / {ea})"))
            for cand in cands:
                found = rec([*rest, cand])
                if found:
                    return found
        return None

    got = rec([(Fraction(n), str(n)) for n in numbers])
    return got[1:-1] if got else None


class Game24(ProceduralTextTask):
    """Make 24 from four numbers, each used exactly once; difficulty widens the number range."""

    name = "game24"
    answer_format = "an arithmetic expression"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        hi = 4 + 2 * difficulty
        while True:
            numbers = sorted(rng.randint(1, hi) for _ in range(4))
            expr = solve_24(tuple(numbers))
            if expr:
                break
        q = f"Use the numbers {numbers}, each exactly once, with + - * / and parentheses to make 24."
        sol = f"One way: {expr} = 24.\n\\boxed{{{expr}}}"
        return self.problem(seed, difficulty, q, expr, sol, numbers=numbers, target=24)

    def score(self, problem: Problem, answer: str) -> float:
        """The expression equals 24 and uses every given number exactly once."""
        try:
            value, literals = safe_arith(answer)
        except UnsafeArithmetic:
            return 0.0
        return float(value == 24 and _check_uses(literals, problem.meta["numbers"], exactly=True))


class Sorting(ProceduralTextTask):
    """Sort a list of integers ascending or descending; difficulty lengthens it and adds negatives."""

    name = "sorting"
    answer_format = "a comma-separated list"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        n, hi = 3 + 2 * difficulty, 10 * difficulty**2
        lo = -hi if difficulty >= 3 else 0
        values = [rng.randint(lo, hi) for _ in range(n)]
        descending = rng.random() < 0.5
        result = sorted(values, reverse=descending)
        order = "descending" if descending else "ascending"
        answer = ", ".join(map(str, result))
        q = f"Sort these numbers in {order} order: {', '.join(map(str, values))}."
        sol = f"Ordering the {n} numbers from {'largest' if descending else 'smallest'} first gives {answer}."
        return self.problem(seed, difficulty, q, answer, sol, values=result)

    def score(self, problem: Problem, answer: str) -> float:
        """The same integers in the asked order."""
        return float(_int_list(answer) == problem.meta["values"])


def _linear_side(coef: int, const: int) -> str:
    parts = []
    if coef:
        parts.append("x" if coef == 1 else "-x" if coef == -1 else f"{coef}x")
    if const or not parts:
        parts.append(f"{'+ ' if const >= 0 else '- '}{abs(const)}" if parts else str(const))
    return " ".join(parts)


class LinearEquation(ProceduralTextTask):
    """Solve ``a x + b = c x + d`` for x; fractional solutions from difficulty 4."""

    name = "linear_equation"
    answer_format = "a number (a fraction like 7/3 is fine)"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        hi = 5 * difficulty
        q_den = rng.choice([2, 3, 4, 5]) if difficulty >= 4 else 1
        x = Fraction(rng.randint(-hi, hi), q_den)
        c = rng.randint(-hi, hi) if difficulty >= 2 else 0
        k = rng.choice([k for k in range(-3, 4) if k])
        a = c + k * q_den
        b = rng.randint(-hi * 2, hi * 2)
        d = b + (a - c) * x
        assert d.denominator == 1
        lhs, rhs = _linear_side(a, b), _linear_side(c, int(d))
        answer = str(x)
        sol = f"Collect the x terms on the left: {a - c}x = {int(d) - b}, so x = {int(d) - b}/{a - c} = {answer}."
        return self.problem(seed, difficulty, f"Solve for x: {lhs} = {rhs}", answer, sol, x=answer)

    def score(self, problem: Problem, answer: str) -> float:
        """The exact solution as a number or fraction (``x = 7/3`` or ``7/3``; a rounded decimal is not exact)."""
        got = parse_number(answer)
        return float(got is not None and got == Fraction(problem.meta["x"]))


class ModularArithmetic(ProceduralTextTask):
    """Residues: sums and products (1-2), powers (3-4), modular inverses (5)."""

    name = "modular_arithmetic"
    answer_format = "an integer between 0 and m - 1"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        m = rng.randint(5, 10 * difficulty**2 + 7)
        a, b = rng.randint(2, 50 * difficulty**2), rng.randint(2, 50 * difficulty**2)
        if difficulty == 1:
            value, q = (a + b) % m, f"What is ({a} + {b}) mod {m}?"
            sol = f"{a} + {b} = {a + b}, and {a + b} mod {m} = {value}."
        elif difficulty == 2:
            value, q = (a * b) % m, f"What is ({a} * {b}) mod {m}?"
            sol = f"{a} * {b} = {a * b}, and {a * b} mod {m} = {value}."
        elif difficulty in (3, 4):
            e = rng.randint(2, 20 if difficulty == 3 else 1000)
            value, q = pow(a, e, m), f"What is {a}^{e} mod {m}?"
            sol = f"By repeated squaring modulo {m}, {a}^{e} mod {m} = {value}."
        else:
            m = rng.choice([p for p in range(11, 200) if all(p % d for d in range(2, int(p**0.5) + 1))])
            a = rng.randint(2, m - 1)
            value = pow(a, -1, m)
            q = f"Find the inverse of {a} modulo {m}: the integer x in [0, {m - 1}] with {a}x ≡ 1 (mod {m})."
            sol = f"The extended Euclidean algorithm gives x = {value}; check: {a} * {value} = {a * value} ≡ 1."
        return self.problem(seed, difficulty, q, str(value), sol, value=value, m=m)

    def score(self, problem: Problem, answer: str) -> float:
        """The exact residue."""
        return float(_int_of(answer) == problem.meta["value"])


def _sudoku_solution(rng: random.Random) -> list[list[int]]:
    base = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    digits = rng.sample([1, 2, 3, 4], 4)
    grid = [[digits[v - 1] for v in row] for row in base]
    bands = rng.sample([0, 1], 2)
    rows = [2 * band + r for band in bands for r in rng.sample([0, 1], 2)]
    grid = [grid[r] for r in rows]
    stacks = rng.sample([0, 1], 2)
    cols = [2 * s + c for s in stacks for c in rng.sample([0, 1], 2)]
    grid = [[row[c] for c in cols] for row in grid]
    if rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid, strict=True)]
    return grid


def sudoku_valid(grid: list[list[int]]) -> bool:
    """Every row, column and 2x2 box of a 4x4 grid holds 1..4 once."""
    full = {1, 2, 3, 4}
    rows = [set(r) for r in grid]
    cols = [set(c) for c in zip(*grid, strict=True)]
    boxes = [{grid[r][c] for r in range(br, br + 2) for c in range(bc, bc + 2)} for br in (0, 2) for bc in (0, 2)]
    return all(g == full for g in rows + cols + boxes)


class Sudoku4(ProceduralTextTask):
    """Fill a 4x4 sudoku; difficulty removes more givens (any valid completion of the givens is accepted)."""

    name = "sudoku4"
    answer_format = "four rows of four digits separated by spaces, e.g. 1234 3412 2143 4321"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        solution = _sudoku_solution(rng)
        blanks = set(rng.sample(range(16), 3 + 2 * difficulty))
        givens = [[0 if 4 * r + c in blanks else solution[r][c] for c in range(4)] for r in range(4)]
        shown = "\n".join(" ".join(str(v) if v else "." for v in row) for row in givens)
        q = (
            "Fill in the 4x4 sudoku so that every row, column and 2x2 box contains 1, 2, 3 and 4 "
            f"exactly once ('.' is empty):\n{shown}"
        )
        answer = " ".join("".join(map(str, row)) for row in solution)
        sol = f"Filling each empty cell with the only digit its row, column and box allow:\n{answer}"
        return self.problem(seed, difficulty, q, answer, sol, givens=givens)

    def score(self, problem: Problem, answer: str) -> float:
        """Sixteen digits forming a valid grid that keeps every given."""
        digits = re.findall(r"\d", answer[:200])
        if len(digits) != 16 or any(d not in "1234" for d in digits):
            return 0.0
        grid = [[int(digits[4 * r + c]) for c in range(4)] for r in range(4)]
        givens = problem.meta["givens"]
        matches = all(givens[r][c] in (0, grid[r][c]) for r in range(4) for c in range(4))
        return float(matches and sudoku_valid(grid))


_PEOPLE = "ABCD"


def _holds(stmt: dict[str, Any], knights: tuple[bool, ...]) -> bool:
    kind = stmt["type"]
    if kind == "is":
        return knights[stmt["who"]] == stmt["knight"]
    if kind == "same":
        return (knights[stmt["a"]] == knights[stmt["b"]]) == stmt["equal"]
    if kind in ("and", "or"):
        x, y = knights[stmt["a"]] == stmt["ka"], knights[stmt["b"]] == stmt["kb"]
        return (x and y) if kind == "and" else (x or y)
    if kind == "count":
        return sum(not k for k in knights) == stmt["knaves"]
    raise ValueError(f"unknown statement type {kind!r}")


def _say(stmt: dict[str, Any], speaker: int) -> str:
    def who(i: int) -> str:
        return "I" if i == speaker else _PEOPLE[i]

    def role(i: int, knight: bool) -> str:
        if i == speaker:
            return f"I am a {'knight' if knight else 'knave'}"
        return f"{_PEOPLE[i]} is a {'knight' if knight else 'knave'}"

    kind = stmt["type"]
    if kind == "is":
        return role(stmt["who"], stmt["knight"])
    if kind == "same":
        a, b = (stmt["b"], stmt["a"]) if stmt["a"] == speaker else (stmt["a"], stmt["b"])
        return f"{who(a)} and {who(b)} are {'the same kind' if stmt['equal'] else 'different kinds'}"
    if kind in ("and", "or"):
        return f"{role(stmt['a'], stmt['ka'])} {kind} {role(stmt['b'], stmt['kb'])}"
    return f"exactly {stmt['knaves']} of us {'is a knave' if stmt['knaves'] == 1 else 'are knaves'}"


def knights_solutions(statements: list[dict[str, Any]], n: int) -> list[tuple[bool, ...]]:
    """All knight/knave assignments (True = knight) consistent with the statements, by brute force.

    A statement is a dict with ``speaker``; a knight's statements are true, a knave's false.
    """
    return [
        assign
        for assign in itertools.product([True, False], repeat=n)
        if all(_holds(s, assign) == assign[s["speaker"]] for s in statements)
    ]


def _random_statement(rng: random.Random, n: int, speaker: int, difficulty: int) -> dict[str, Any]:
    kinds = ["is", "and", "or"] + (["same"] if difficulty >= 2 else []) + (["count"] if difficulty >= 4 else [])
    kind = rng.choice(kinds)
    a, b = rng.sample(range(n), 2)
    if kind == "is":
        return {
            "type": "is",
            "who": rng.choice([i for i in range(n) if i != speaker] or [speaker]),
            "knight": rng.random() < 0.5,
        }
    if kind == "same":
        return {"type": "same", "a": a, "b": b, "equal": rng.random() < 0.5}
    if kind in ("and", "or"):
        return {"type": kind, "a": a, "ka": rng.random() < 0.5, "b": b, "kb": rng.random() < 0.5}
    return {"type": "count", "knaves": rng.randint(0, n)}


def _format_knights(assign: tuple[bool, ...]) -> str:
    return ", ".join(f"{_PEOPLE[i]}: {'knight' if k else 'knave'}" for i, k in enumerate(assign))


class KnightsKnaves(ProceduralTextTask):
    """Knights always tell the truth, knaves always lie; find who is which (unique solution guaranteed)."""

    name = "knights_knaves"
    answer_format = "'A: knight, B: knave, ...'"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        n = 2 + (difficulty >= 3) + (difficulty >= 5)
        truth = tuple(rng.random() < 0.5 for _ in range(n))
        for _ in range(10_000):
            statements = []
            for speaker in range(n):
                for _ in range(1 + (difficulty >= 4)):
                    while True:
                        stmt = _random_statement(rng, n, speaker, difficulty)
                        if _holds(stmt, truth) == truth[speaker]:
                            break
                    statements.append({**stmt, "speaker": speaker})
            if knights_solutions(statements, n) == [truth]:
                break
        else:  # pragma: no cover - never reached for n <= 4
            raise RuntimeError("no uniquely solvable puzzle found")
        lines = "\n".join(f'{_PEOPLE[s["speaker"]]} says: "{_say(s, s["speaker"])}."' for s in statements)
        q = (
            f"On an island, knights always tell the truth and knaves always lie. You meet {n} inhabitants, "
            f"{', '.join(_PEOPLE[:n])}.\n{lines}\nWho is a knight and who is a knave?"
        )
        answer = _format_knights(truth)
        sol = (
            f"Checking all {2**n} assignments against the statements leaves exactly one consistent "
            f"assignment: {answer}.\n\\boxed{{{answer}}}"
        )
        return self.problem(seed, difficulty, q, answer, sol, statements=statements, n=n)

    def score(self, problem: Problem, answer: str) -> float:
        """A complete assignment consistent with every statement (checked by brute force)."""
        n = problem.meta["n"]
        pairs = re.findall(r"\b([A-D])\b\s*(?::|=|-|is)?\s*(?:an?\s+)?(knight|knave)s?\b", answer[:500], re.IGNORECASE)
        given: dict[int, bool] = {}
        for name, role in pairs:
            i, knight = _PEOPLE.index(name.upper()), role.lower() == "knight"
            if i >= n or given.get(i, knight) != knight:
                return 0.0
            given[i] = knight
        if len(given) != n:
            return 0.0
        assign = tuple(given[i] for i in range(n))
        return float(assign in knights_solutions(problem.meta["statements"], n))


def _dijkstra(n: int, edges: list[tuple[int, int, int]], src: int, dst: int) -> tuple[int, list[int]]:
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(n)}
    for u, v, w in edges:
        adj[u].append((v, w))
        adj[v].append((u, w))
    dist, prev, heap = {src: 0}, {}, [(0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in adj[u]:
            if d + w < dist.get(v, 1 << 60):
                dist[v], prev[v] = d + w, u
                heapq.heappush(heap, (d + w, v))
    path = [dst]
    while path[-1] != src:
        path.append(prev[path[-1]])
    return dist[dst], path[::-1]


_PATH_RE = re.compile(r"[A-Z](?:\s*(?:-+>?|→|\\to|,)?\s*[A-Z])+")


class ShortestPath(ProceduralTextTask):
    """Length of the shortest path in a small weighted graph (a path with that length is accepted too)."""

    name = "shortest_path"
    answer_format = "the length as an integer"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        n = 4 + difficulty
        order = list(range(n))
        rng.shuffle(order)
        weights: dict[tuple[int, int], int] = {}
        for i in range(1, n):  # a random spanning tree keeps the graph connected
            u, v = order[i], order[rng.randrange(i)]
            weights[(min(u, v), max(u, v))] = rng.randint(1, 5 + 2 * difficulty)
        for _ in range(n // 2 + difficulty):
            u, v = rng.sample(range(n), 2)
            weights.setdefault((min(u, v), max(u, v)), rng.randint(1, 5 + 2 * difficulty))
        edges = [(u, v, w) for (u, v), w in sorted(weights.items())]
        length, path = _dijkstra(n, edges, 0, n - 1)
        names = string.ascii_uppercase
        listing = ", ".join(f"{names[u]}-{names[v]} ({w})" for u, v, w in edges)
        q = (
            f"An undirected graph has nodes {', '.join(names[:n])} and weighted edges {listing}. What is the "
            f"length of the shortest path from {names[0]} to {names[n - 1]}?"
        )
        route = " -> ".join(names[i] for i in path)
        sol = f"Dijkstra from {names[0]} gives the path {route} of length {length}."
        return self.problem(seed, difficulty, q, str(length), sol, edges=[list(e) for e in edges], n=n, length=length)

    def score(self, problem: Problem, answer: str) -> float:
        """The shortest length, or a path from start to goal whose length is the shortest."""
        got = _int_of(answer)
        if got is not None:
            return float(got == problem.meta["length"])
        n, names = problem.meta["n"], string.ascii_uppercase
        if len(answer) > 200 or not _PATH_RE.fullmatch(answer.strip()):
            return 0.0
        nodes = re.findall(r"[A-Z]", answer)
        if any(names.index(c) >= n for c in nodes):
            return 0.0
        weights = {frozenset((u, v)): w for u, v, w in problem.meta["edges"]}
        ids = [names.index(c) for c in nodes]
        if ids[0] != 0 or ids[-1] != n - 1 or any(frozenset(p) not in weights for p in itertools.pairwise(ids)):
            return 0.0
        return float(sum(weights[frozenset(p)] for p in itertools.pairwise(ids)) == problem.meta["length"])


_VOWELS = set("aeiou")


def _string_op(rng: random.Random, s: str) -> tuple[str, str]:
    """A random transformation of ``s``: (description, result)."""
    op = rng.choice(["reverse", "sort", "drop_vowels", "rotate", "upper_odd", "replace"])
    if op == "reverse":
        return "reverse it", s[::-1]
    if op == "sort":
        return "sort its letters alphabetically", "".join(sorted(s))
    if op == "drop_vowels":
        return "delete every vowel (a, e, i, o, u)", "".join(c for c in s if c not in _VOWELS)
    if op == "rotate":
        k = rng.randint(1, max(1, len(s) - 1))
        return f"move its first {k} character{'s' if k > 1 else ''} to the end", s[k:] + s[:k]
    if op == "upper_odd":
        return (
            "uppercase the characters at odd positions (1st, 3rd, ...)",
            "".join(c.upper() if i % 2 == 0 else c for i, c in enumerate(s)),
        )
    old = rng.choice(s)
    new = rng.choice([c for c in string.ascii_lowercase if c != old])
    return f"replace every '{old}' with '{new}'", s.replace(old, new)


class StringManipulation(ProceduralTextTask):
    """Apply a chain of string operations (or count a letter); difficulty lengthens the word and the chain."""

    name = "string_manipulation"
    answer_format = "the resulting string (or count) only"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(3 + 2 * difficulty))
        if rng.random() < 0.25:
            letter = rng.choice(word)
            count = word.count(letter)
            q = f"How many times does the letter '{letter}' occur in the string '{word}'?"
            sol = f"Scanning '{word}' for '{letter}' finds it {count} time{'s' if count != 1 else ''}."
            return self.problem(seed, difficulty, q, str(count), sol, result=str(count))
        while True:
            steps, s = [], word
            for _ in range(1 + (difficulty + 1) // 2):
                if not s:
                    break
                desc, s = _string_op(rng, s)
                steps.append((desc, s))
            if s:
                break
        chain = ", then ".join(d for d, _ in steps)
        q = f"Start with the string '{word}'. First {chain}. What is the final string?"
        trace = "\n".join(f"{d}: {r}" for d, r in steps)
        sol = f"Start: {word}\n{trace}"
        return self.problem(seed, difficulty, q, s, sol, result=s)

    def score(self, problem: Problem, answer: str) -> float:
        """The exact resulting string (quotes around it are ignored)."""
        return float(answer.strip().strip("'\"`").strip() == problem.meta["result"])


_CONVERSIONS: dict[int, list[tuple[str, str]]] = {
    1: [("km", "m"), ("m", "cm"), ("kg", "g"), ("min", "s"), ("h", "min"), ("kJ", "J")],
    2: [("km/h", "m/s"), ("m/s", "km/h"), ("mi", "km"), ("ft", "m"), ("lb", "kg"), ("kPa", "Pa")],
    3: [("mph", "m/s"), ("atm", "kPa"), ("kWh", "J"), ("cal", "J"), ("in", "cm"), ("bar", "atm")],
    4: [("g/cm^3", "kg/m^3"), ("km/h^2", "m/s^2"), ("kcal", "kJ"), ("eV", "J"), ("mm^2", "m^2")],
    5: [("kg m^2/s", "g cm^2/s"), ("J/(mol K)", "cal/(mol K)"), ("kN m", "J"), ("mW h", "J"), ("L/min", "m^3/s")],
}


class UnitConversion(ProceduralTextTask):
    """Convert a physical quantity between units (numeric check within 1 %, the unit checked if given)."""

    name = "unit_conversion"
    answer_format = "a number followed by the unit"
    rel_tol = 1e-2

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        src, dst = rng.choice(_CONVERSIONS[difficulty])
        digits = rng.randint(2, 3)
        value = round(rng.uniform(1, 10) * 10 ** rng.randint(-1, difficulty - 1), digits)
        result = convert(value, src, dst)
        assert result is not None, (src, dst)
        a, b = parse_unit(src), parse_unit(dst)
        assert a is not None and b is not None
        answer = f"{result:.4g} {dst}"
        q = f"Convert {value:g} {src} to {dst}."
        sol = (
            f"1 {src} = {a.factor / b.factor:.6g} {dst}, so {value:g} {src} = {value:g} x "
            f"{a.factor / b.factor:.6g} {dst} = {answer}."
        )
        return self.problem(seed, difficulty, q, answer, sol, value=result, unit=dst)

    def score(self, problem: Problem, answer: str) -> float:
        """Within 1 % of the reference; a given unit must parse and have the right dimension."""
        got = parse_quantity(answer)
        if got is None:
            return 0.0
        value, unit = got
        if unit:
            value = convert(value, unit, problem.meta["unit"])
            if value is None:
                return 0.0
        return float(numbers_close(value, problem.meta["value"], self.rel_tol, abs_tol=0.0))


def _choice_letter(answer: str, n_options: int) -> str | None:
    s = answer.strip()
    m = re.fullmatch(
        r"(?:(?:option|answer|choice):?\s*)?\(?([A-Za-z])\)?[.):]?(?:\s.*)?", s[:200], re.IGNORECASE | re.DOTALL
    )
    if not m:
        return None
    letter = m.group(1).upper()
    return letter if ord(letter) - ord("A") < n_options else None


class MultipleChoice(ProceduralTextTask):
    """Pick the option with the right value (a sum, product, gcd or largest fraction); more options and
    closer distractors with difficulty."""

    name = "multiple_choice"
    answer_format = "the letter of the correct option"

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        n_opts = 4 if difficulty <= 3 else 5
        kind = rng.choice(["sum", "product", "gcd", "fraction"])
        hi = 20 * difficulty
        if kind == "fraction":
            fracs: set[Fraction] = set()
            while len(fracs) < n_opts:
                fracs.add(Fraction(rng.randint(1, hi), rng.randint(1, hi)))
            options = [f"{f.numerator}/{f.denominator}" for f in rng.sample(sorted(fracs), n_opts)]
            correct = max(range(n_opts), key=lambda i: Fraction(options[i]))
            q = "Which of these fractions is the largest?"
            why = f"{options[correct]} = {float(Fraction(options[correct])):.4f} is larger than every other option"
        else:
            a, b = rng.randint(2, hi), rng.randint(2, hi)
            if kind == "sum":
                value, q = a + b, f"What is {a} + {b}?"
            elif kind == "product":
                value, q = a * b, f"What is {a} * {b}?"
            else:
                g = rng.randint(2, 3 + difficulty)
                a, b = a * g, b * g
                value, q = _gcd(a, b), f"What is the greatest common divisor of {a} and {b}?"
            spread = max(2, 10 - 2 * difficulty)
            while value + spread - max(1, value - spread) + 1 < n_opts:  # a small value (gcd 2) near the floor of 1
                spread += 1
            values = {value}
            while len(values) < n_opts:
                values.add(max(1, value + rng.randint(-spread, spread)))
            nums = rng.sample(sorted(values), n_opts)
            options, correct = [str(v) for v in nums], nums.index(value)
            why = f"the value is {value}"
        letters = string.ascii_uppercase[:n_opts]
        body = "\n".join(f"({letters[i]}) {opt}" for i, opt in enumerate(options))
        answer = letters[correct]
        sol = f"{why}, which is option ({answer})."
        return self.problem(seed, difficulty, f"{q}\n{body}", answer, sol, n_options=n_opts)

    def score(self, problem: Problem, answer: str) -> float:
        """The letter of the correct option."""
        return float(_choice_letter(answer, problem.meta["n_options"]) == problem.answer)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a

"""Is a model's answer equal to the reference? math-verify's conventions, graded in a sandboxed worker.

Two paths:

* **Plain numbers** (``42``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``, ``1.5e3``, ``1.5 \\times 10^{3}``,
  ``25,000``) are read into exact `fractions.Fraction` here and compared without spawning anything.
* **Everything else** (expressions, equations, percentages, sets, intervals, tuples, matrices) is parsed
  and compared by Hugging Face's math-verify (the grader of TRL and open-r1) in a separate worker process
  (`tasks/text/_grader_worker.py`) under RLIMIT_AS / RLIMIT_CPU and a wall-clock timeout, so nothing of
  the answer is parsed or evaluated in the caller's process. math-verify is never imported here.

Before anything reaches the worker, `refusal` turns away what math-verify has no guard against: answers
longer than `MAX_EXPR_CHARS`, control characters, brackets nested deeper than `MAX_DEPTH`, power towers
and exponents beyond +-`MAX_EXPONENT` (``9^9^9``, ``2^{10^6}``), and factorials or binomials of numbers
beyond `MAX_FACTORIAL`. Refused answers compare unequal.

Conventions are math-verify's (docs/architecture.md, "Grading conventions"): ``e`` is Euler's number,
``\\ln`` the natural logarithm, ``10\\%`` equals ``0.1`` (and ``10``), a comma list is a set (``1, 2`` equals
``2, 1``), ``[1, 2]`` a tuple or interval, ``x = 3`` matches ``3``, units in ``\\text{}`` are dropped, and a
float matches a fraction or float that rounds to the same 6 decimals (an integer only exactly), and
``1.5e3`` is 1.5 e 3 (write ``1.5E3`` or ``1.5 \\times 10^{3}``). Two departures, both stricter: two
numbers that round alike must also agree to 1e-3 relatively (6-decimal rounding alone calls ``1e-8``
and ``2e-8`` equal), and words of 4+ letters compare as text (math-verify reads ``knight`` as the
product k*n*i*g*h*t, so anagrams would match). `parse_number`, which the tasks' own checkers use, still
reads ``1.5e3`` as 1500. A task may ask for a
relative tolerance on numbers (``rel_tol``) and for units to count (``strict_units``, HiPhO).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

MAX_INPUT_CHARS = 10_000  # longer answers are refused before any parsing
MAX_EXPR_CHARS = 400  # answers sent to math-verify are at most this long (it slows past ~1k characters)
MAX_NUMBER_CHARS = 400
MAX_DEPTH = 20  # ( [ { nesting; math-verify's parser takes seconds on a few hundred levels
MAX_EXPONENT = 1000  # |exponent| allowed in 1e<exp>, 10^<exp> and x^<exp>
MAX_POWERS = 8
MAX_FACTORIAL = 1000  # n! and binomials of larger integers are refused (sympy evaluates them eagerly)
DEFAULT_TIMEOUT_S = 1.5  # a whole comparison in the worker, wall clock
ROUND_DECIMALS = 6  # math-verify's float_rounding
FLOAT_REL_GUARD = Fraction(1, 1000)  # floats that round alike must also agree to this relative tolerance
_WORKER_PATH = Path(__file__).with_name("_grader_worker.py")


# --- plain numbers (never spawns) ---------------------------------------------------------------------

_NUM = r"(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_PLAIN_NUMBER_RE = re.compile(rf"([-+]?){_NUM}", re.IGNORECASE)
_FRACTION_RE = re.compile(rf"\(?([-+]?{_NUM})\)?/\(?([-+]?{_NUM})\)?", re.IGNORECASE)
_SCI_RE = re.compile(rf"([-+]?{_NUM})\*10\^\(?([-+]?\d+)\)?", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_LATEX = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\displaystyle", ""),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\cdot", "*"),
    ("\\times", "*"),
    ("\\div", "/"),
    ("\\approx", "="),
    ("\\quad", " "),
    ("\\,", " "),
    ("\\;", " "),
    ("\\ ", " "),
    ("\\!", ""),
    ("**", "^"),
    ("·", "*"),
    ("×", "*"),
    ("−", "-"),
    ("$", ""),
)
_TEXT_RE = re.compile(r"\\(?:mathrm|text|mathit|operatorname|mathbf)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\frac\s*(\{[^{}]*\}|[^\s{}\\])\s*(\{[^{}]*\}|[^\s{}\\])")


def _number_text(text: str) -> str | None:
    """LaTeX of a plain number to infix (``\\frac{3}{4}`` -> ``((3)/(4))``, ``{x}`` -> ``(x)``), the right
    side of ``x = 7``; None when a ``{`` never closes or another LaTeX command is left on that side."""
    s = text.strip()
    for a, b in _NUMBER_LATEX:
        s = s.replace(a, b)
    s = _TEXT_RE.sub(r" \1 ", s)
    s = _FRAC_RE.sub(lambda m: f"(({m.group(1).strip('{}')})/({m.group(2).strip('{}')}))", s)
    depth = 0
    for c in s:
        depth = depth + 1 if c == "{" else max(depth - 1, 0) if c == "}" else depth
    s = s.rsplit("=", 1)[1] if "=" in s else s
    if depth or "\\" in s:
        return None
    return s.replace("{", "(").replace("}", ")")


def parse_number(text: str) -> Fraction | None:
    """An exact number from ``42``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``, ``1.5e3``, ``1.5\\times10^{3}``,
    ``25,000`` (thousands separators), ``x = 7``; None for anything else (or exponents beyond +-1000)."""
    if not isinstance(text, str) or len(text) > MAX_NUMBER_CHARS:
        return None
    s = _number_text(text)
    return None if s is None else _number(s)


def _fraction(num: str) -> Fraction | None:
    m = re.search(r"e([-+]?\d+)$", num, re.IGNORECASE)
    if m and abs(int(m.group(1))) > MAX_EXPONENT:
        return None
    try:
        return Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None


def _number(text: str) -> Fraction | None:
    if re.search(r"\d\s+\d", text):  # "3 4" is not 34
        return None
    s = text.replace(" ", "")
    while s.startswith("(") and s.endswith(")") and s.count("(") == 1 and s.count(")") == 1:
        s = s[1:-1]
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if _PLAIN_NUMBER_RE.fullmatch(s):
        return _fraction(s)
    if s.count("(") == s.count(")"):
        inner = s[1:-1] if s.startswith("((") and s.endswith("))") else s
        m = _FRACTION_RE.fullmatch(inner)
        if m:
            a, b = _fraction(m.group(1)), _fraction(m.group(2))
            return None if a is None or b is None or b == 0 else a / b
        m = _SCI_RE.fullmatch(s)
        if m and abs(int(m.group(2))) <= MAX_EXPONENT:
            mant = _fraction(m.group(1))
            return None if mant is None else mant * Fraction(10) ** int(m.group(2))
    return None


def numbers_close(a: Fraction | float, b: Fraction | float, rel_tol: float = 1e-6, abs_tol: float = 1e-12) -> bool:
    """``|a - b| <= max(rel_tol * max(|a|, |b|), abs_tol)``, exact for fractions; rel_tol 0 means equal."""
    a, b = Fraction(a), Fraction(b)
    return abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol))


def numbers_match(a: Fraction, b: Fraction, a_float: bool, b_float: bool) -> bool:
    """math-verify's rule for two numbers: exact unless one side was written as a float and the other is
    not an integer literal; then equal after rounding to `ROUND_DECIMALS` decimals (``1/3`` = ``0.333333``)
    and, our guard, within `FLOAT_REL_GUARD` relatively (``1e-8`` is not ``2e-8``)."""
    if a == b or not (a_float or b_float):
        return a == b
    if (not a_float and a.denominator == 1) or (not b_float and b.denominator == 1):
        return False  # an integer against a float: exact (24 is not 24.0000001)
    return round(a, ROUND_DECIMALS) == round(b, ROUND_DECIMALS) and numbers_close(a, b, FLOAT_REL_GUARD, 0.0)


def _plain_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, written as a float?) for a plain number that is not an equation; None otherwise. A lower
    case ``e`` is Euler's number (math-verify), so ``1.5e3`` goes to the worker (``1.5E3`` stays here)."""
    if "=" in text or "\\approx" in text or re.search(r"\de", text):
        return None
    value = parse_number(text)
    if value is None:
        return None
    return value, bool(re.search(r"\d\.|\.\d|\dE[-+]?\d", text))


# --- words (never spawns) ----------------------------------------------------------------------------

_WORDS_RE = re.compile(r"[A-Za-z][A-Za-z ,;:'-]*")
_WORD_RE = re.compile(r"[A-Za-z]{4,}")


def _words(text: str) -> frozenset[str] | None:
    """A plain-text answer (letters and punctuation, a word of 4+ letters: ``knight``, ``A: knight, B:
    knave``) as its set of comma-separated parts, lower case; None for anything else. math-verify reads a
    word as a product of one-letter symbols, so anagrams would compare equal; 3-letter runs (``nRT``,
    ``mgh``) stay products."""
    if not _WORDS_RE.fullmatch(text) or not _WORD_RE.search(text):
        return None
    return frozenset(" ".join(part.lower().split()) for part in re.split(r"[,;]", text))


# --- what never reaches the worker --------------------------------------------------------------------

_BIG_INT_RE = re.compile(r"\d{4,}")
_POWER_RE = re.compile(r"\^|\*\*")
_EXP_TOKEN_RE = re.compile(r"\s*[-+]?\s*(\\[A-Za-z]+|[A-Za-z0-9.]+)")
_LITERAL_RE = re.compile(r"\d+\.?\d*(?:[eE][-+]?\d+)?")
_OPEN, _CLOSE = "([{", ")]}"


def _group_end(s: str, i: int) -> int:
    """Index after the bracket group opening at ``s[i]`` (unbalanced: the end of ``s``)."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] in _OPEN:
            depth += 1
        elif s[j] in _CLOSE:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(s)


def _group_start(s: str, j: int) -> int:
    """Index of the bracket opening the group that closes at ``s[j]`` (unbalanced: 0)."""
    depth = 0
    for i in range(j, -1, -1):
        if s[i] in _CLOSE:
            depth += 1
        elif s[i] in _OPEN:
            depth -= 1
            if depth == 0:
                return i
    return 0


def _exponent(s: str, i: int) -> tuple[str, int]:
    """The exponent after the power operator ending at ``s[i]``: a bracket group or one token."""
    while i < len(s) and s[i] in " +-":
        i += 1
    if i < len(s) and s[i] in _OPEN:
        end = _group_end(s, i)
        return s[i:end], end
    m = _EXP_TOKEN_RE.match(s, i)
    return (m.group(0), m.end()) if m else ("", i)


def _power_refusal(s: str) -> str | None:
    """Towers (``9^9^9``, ``(2^9)^9``, ``e^{e^x}``) and exponents whose literals multiply past
    `MAX_EXPONENT` (each literal counted as at least 2, so ``x^{1/2}`` passes and ``2^{1000*1000}`` not)."""
    powers = list(_POWER_RE.finditer(s))
    if len(powers) > MAX_POWERS:
        return "too many powers"
    for m in powers:
        exponent, end = _exponent(s, m.end())
        if _POWER_RE.search(exponent) or "exp" in exponent or _POWER_RE.match(s, end):
            return "power tower"
        base_end = m.start() - 1
        while base_end >= 0 and s[base_end] == " ":
            base_end -= 1
        if base_end >= 0 and s[base_end] in _CLOSE and _POWER_RE.search(s, _group_start(s, base_end), base_end):
            return "power tower"
        bound = 1.0
        for lit in _LITERAL_RE.findall(exponent):
            bound *= max(abs(float(lit)), 2.0)
        if bound > MAX_EXPONENT:
            return "exponent too large"
    if re.search(r"\\exp\s*[({]", s):
        for m in re.finditer(r"\\exp\s*", s):
            arg = s[m.end() : _group_end(s, m.end())]
            if _POWER_RE.search(arg) or "exp" in arg or any(float(x) > MAX_EXPONENT for x in _LITERAL_RE.findall(arg)):
                return "exponent too large"
    return None


def _depth(s: str) -> int:
    depth = deepest = 0
    for c in s:
        if c in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif c in _CLOSE:
            depth -= 1
    return deepest


def refusal(answer: object) -> str | None:
    """Why ``answer`` may not reach the grading worker, or None when it may. Cheap: linear scans only."""
    if not isinstance(answer, str):
        return "not a string"
    if len(answer) > MAX_INPUT_CHARS:
        return "too long"
    if any(ord(c) < 32 and c not in "\t\n\r" for c in answer):
        return "control characters"
    s = answer.strip()
    if not s:
        return "empty"
    if len(s) > MAX_EXPR_CHARS:
        return "too long"
    if _depth(s) > MAX_DEPTH:
        return "nested too deeply"
    if ("!" in s.replace("\\!", "") or re.search(r"binom|choose|Gamma|gamma", s)) and (
        _POWER_RE.search(s) or any(int(n) > MAX_FACTORIAL for n in _BIG_INT_RE.findall(s))
    ):
        return "factorial too large"  # of a big literal or of a power: sympy evaluates it eagerly
    if re.search(r"\d[eE]\+?\d{4,}", s) and any(abs(int(n)) > MAX_EXPONENT for n in re.findall(r"[eE]\+?(\d+)", s)):
        return "exponent too large"
    return _power_refusal(s)


# --- sandboxed math-verify worker ---------------------------------------------------------------------


class _Worker:
    """One long-lived grading process (importing sympy and math-verify costs ~0.5 s, so it is kept between
    calls), killed and restarted on timeout. One request at a time; a forked child starts its own worker.
    ``argv`` is the worker command (the sandboxed math-verify script by default)."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.argv = argv or [sys.executable, "-I", str(_WORKER_PATH)]
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._buf = b""

    def _start(self, startup_timeout: float = 60.0) -> None:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._pid, self._buf = os.getpid(), b""
        if self._readline(startup_timeout) != b"ready":
            self.close()
            raise RuntimeError(
                "the grading worker did not start; is math-verify installed? "
                "(pip install -c constraints.txt 'math-verify[antlr4_13_2]')"
            )

    def _readline(self, timeout: float) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.strip()

    def close(self) -> None:
        """Kill the worker (if this process started it)."""
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()

    def request(self, payload: dict, timeout: float) -> dict | None:
        """Send one request; the reply, or None on timeout/crash (the worker is then restarted next time)."""
        with self._lock:
            if self._pid != os.getpid():
                self._proc = None  # inherited through fork: leave the parent's worker alone
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(payload).encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self.close()
                return None
            line = self._readline(timeout)
            if line is None:
                self.close()
                return None
            try:
                return json.loads(line)
            except ValueError:
                self.close()
                return None


_WORKER = _Worker()
atexit.register(_WORKER.close)
CACHE_SIZE = 4096  # worker verdicts remembered: a GRPO group often repeats an answer
_VERDICTS: OrderedDict[tuple, bool] = OrderedDict()


def is_equivalent(
    pred: str | None,
    ref: str,
    *,
    rel_tol: float | None = None,
    strict_units: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """True when ``pred`` and ``ref`` denote the same answer under math-verify's conventions (module doc).

    Plain numbers compare here, exactly (`numbers_match`); everything else goes to the sandboxed worker,
    which answers within ``timeout`` seconds or counts as unequal. ``rel_tol`` additionally accepts two
    numbers (plain or evaluated, ``2\\sqrt{2}`` vs ``2.83``) within that relative tolerance;
    ``strict_units`` keeps units (``5\\ \\text{m}`` no longer equals ``5``). Refused answers are unequal.
    """
    if not isinstance(pred, str) or not isinstance(ref, str):
        return False
    p, r = pred.strip(), ref.strip()
    if not p or not r or refusal(p) or refusal(r):
        return False
    if p.replace(" ", "") == r.replace(" ", ""):
        return True
    pw, rw = _words(p), _words(r)
    if pw is not None and rw is not None:
        return pw == rw
    pn, rn = _plain_number(p), _plain_number(r)
    if pn is not None and rn is not None:
        if rel_tol is not None:
            return numbers_close(pn[0], rn[0], rel_tol)
        return numbers_match(pn[0], rn[0], pn[1], rn[1])
    key = (p, r, rel_tol, strict_units)
    if key in _VERDICTS:
        _VERDICTS.move_to_end(key)
        return _VERDICTS[key]
    payload = {"pred": p, "ref": r, "rel_tol": rel_tol, "strict_units": strict_units, "cpu_s": max(1, round(timeout))}
    reply = _WORKER.request(payload, timeout)
    if reply is None:  # timed out or crashed: unequal, and not remembered (the next try may be less loaded)
        return False
    verdict = _VERDICTS[key] = reply.get("equivalent") is True
    if len(_VERDICTS) > CACHE_SIZE:
        _VERDICTS.popitem(last=False)
    return verdict

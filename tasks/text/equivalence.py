"""Is a model's answer equal to the reference? Numbers, fractions and simple expressions, without eval().

Two paths:

* **Plain numbers** (``42``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``, ``1.5e3``, ``1.5 \\times 10^{3}``,
  ``25,000``) are parsed into exact `fractions.Fraction` and compared here; nothing is spawned.
* **Expressions** (``\\frac{I_0 a}{2r}\\sin(\\theta/2)``) go through a whitelist tokenizer first: digits,
  ``+ - * / ^ ( )``, a few functions (``sqrt sin cos tan exp log ln ...``), ``pi``, single-letter and Greek
  variables with subscripts, and short letter runs read as products (``nRT``). Anything else (``__``,
  ``import``, quotes, dots outside numbers, brackets, non-ASCII, NUL bytes, more than `MAX_EXPR_CHARS`
  characters, an exponent beyond +-`MAX_EXPONENT`, a power tower such as ``9^9^9`` or ``(2^9)^9``) is
  refused and compares unequal. The canonical token string is then parsed with sympy's ``parse_expr`` in
  a separate worker process (`tasks/text/_sympy_worker.py`) under RLIMIT_AS/RLIMIT_CPU and a wall-clock
  timeout, and compared numerically at random points.

Conventions: ``\\ln`` and ``log`` are natural logarithms; ``e`` is a plain variable (write ``exp(x)``);
``x = ...`` and ``\\approx`` compare right-hand sides; ``nRT`` reads as ``n*R*T``.
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
from fractions import Fraction
from pathlib import Path

MAX_INPUT_CHARS = 10_000  # longer answers are refused before any parsing
MAX_EXPR_CHARS = 200  # expressions (after LaTeX normalisation) longer than this are refused
MAX_NUMBER_CHARS = 400
MAX_EXPONENT = 1000  # |exponent| allowed in 1e<exp>, 10^<exp> and x^<exp>
MAX_POWERS = 8
DEFAULT_TIMEOUT_S = 2.0
_WORKER_PATH = Path(__file__).with_name("_sympy_worker.py")

FUNCTIONS = {
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "exp": "exp",
    "log": "log",
    "ln": "log",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "abs": "Abs",
}
CONSTANTS = {"pi"}
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
MAX_LETTER_RUN = 3  # "nRT", "mgh" are products of variables; longer unknown words ("import") are refused

_NUM = r"(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_PLAIN_NUMBER_RE = re.compile(rf"([-+]?){_NUM}", re.IGNORECASE)
_FRACTION_RE = re.compile(rf"\(?([-+]?{_NUM})\)?/\(?([-+]?{_NUM})\)?", re.IGNORECASE)
_SCI_RE = re.compile(rf"([-+]?{_NUM})\*10\^\(?([-+]?\d+)\)?", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TOKEN_RE = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z]+(?:_[A-Za-z0-9]+)?)|"
    r"(\*\*|[-+*/^()]))"
)
_LATEX_SIMPLE = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\displaystyle", ""),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\cdot", "*"),
    ("\\times", "*"),
    ("\\div", "/"),
    ("\\,", " "),
    ("\\;", " "),
    ("\\!", ""),
    ("\\ ", " "),
    ("\\approx", "="),
    ("\\quad", " "),
    ("·", "*"),
    ("×", "*"),
    ("−", "-"),
    ("$", ""),
    ("π", " pi "),
    ("θ", " theta "),
    ("ω", " omega "),
    ("λ", " lambda "),
    ("µ", " mu "),
    ("μ", " mu "),
)


_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_SUBSCRIPT_RE = re.compile(r"[A-Za-z0-9]+")


class UnsafeExpression(ValueError):
    """An answer that the whitelist refuses to hand to sympy."""


# --- LaTeX-lite normalisation -------------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at ``s[i]``: a ``{...}`` group (balanced) or a single character/command."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise UnsafeExpression("missing argument")
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        raise UnsafeExpression("unbalanced braces")
    if s[i] == "\\":
        m = _COMMAND_RE.match(s, i)
        if m:
            return m.group(0), m.end()
    return s[i], i + 1


def _latex(s: str, depth: int = 0) -> str:
    """``\\frac{a}{b}`` -> ``((a)/(b))``, ``\\sqrt[n]{x}``, ``x^{..}``, ``x_{..}``, ``\\theta`` -> ``theta``..."""
    if depth > 20:
        raise UnsafeExpression("nested too deeply")
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = _COMMAND_RE.match(s, i)
            if not m:
                raise UnsafeExpression(f"stray backslash at {i}")
            name, i = m.group(0)[1:], m.end()
            if name == "frac":
                num, i = _group(s, i)
                den, i = _group(s, i)
                out.append(f"(({_latex(num, depth + 1)})/({_latex(den, depth + 1)}))")
            elif name == "sqrt":
                if i < len(s) and s[i] == "[":
                    j = s.find("]", i)
                    if j == -1:
                        raise UnsafeExpression("unclosed root index")
                    index, i = s[i + 1 : j], j + 1
                    arg, i = _group(s, i)
                    out.append(f"(({_latex(arg, depth + 1)})^(1/({_latex(index, depth + 1)})))")
                else:
                    arg, i = _group(s, i)
                    out.append(f" sqrt({_latex(arg, depth + 1)}) ")
            elif name in ("mathrm", "text", "mathit", "operatorname", "mathbf"):
                arg, i = _group(s, i)
                out.append(f" {_latex(arg, depth + 1)} ")
            else:
                out.append(f" {name} ")
        elif c == "_":
            run = _SUBSCRIPT_RE.match(s, i + 1)  # plain R_min; LaTeX R_{\min} and x_1 below
            arg, i = (run.group(0), run.end()) if run else _group(s, i + 1)
            sub = re.sub(r"[^A-Za-z0-9]", "", arg)
            if not sub:
                raise UnsafeExpression("empty subscript")
            out.append(f"_{sub} ")
        elif c == "{":
            arg, i = _group(s, i)
            out.append(f"({_latex(arg, depth + 1)})")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def normalize(answer: str) -> str:
    """LaTeX-lite to plain infix: ``\\frac{3}{4}`` -> ``((3)/(4))``, ``2\\times10^{3}`` -> ``2*10^(3)``.
    Raises `UnsafeExpression` on malformed LaTeX."""
    s = answer.strip()
    for a, b in _LATEX_SIMPLE:
        s = s.replace(a, b)
    s = _latex(s).replace("**", "^")
    return " ".join(s.split())


def _rhs(s: str) -> str:
    """``x = 3`` -> ``3`` (the last side of an equation chain); other text unchanged."""
    return s.rsplit("=", 1)[1].strip() if "=" in s else s


# --- plain numbers (never spawns) ---------------------------------------------------------------------


def _fraction(num: str) -> Fraction | None:
    m = re.search(r"e([-+]?\d+)$", num, re.IGNORECASE)
    if m and abs(int(m.group(1))) > MAX_EXPONENT:
        return None
    try:
        return Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(text: str) -> Fraction | None:
    """An exact number from ``42``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``, ``1.5e3``, ``1.5\\times10^{3}``,
    ``25,000`` (thousands separators), ``x = 7``; None for anything else (or exponents beyond +-1000)."""
    if not isinstance(text, str) or len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        return _number(_rhs(normalize(text)))
    except (UnsafeExpression, RecursionError):
        return None


def _number(normalized: str) -> Fraction | None:
    if re.search(r"\d\s+\d", normalized):  # "3 4" is not 34
        return None
    s = normalized.replace(" ", "")
    if len(s) > MAX_NUMBER_CHARS:
        return None
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


# --- whitelist tokenizer ------------------------------------------------------------------------------


def _tokens(s: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; kinds num, name, op. Raises `UnsafeExpression` on any other character."""
    if "__" in s:
        raise UnsafeExpression("double underscore")
    out, i = [], 0
    while i < len(s):
        if s[i].isspace():
            i += 1
            continue
        m = _TOKEN_RE.match(s, i)
        if not m or m.end() == i:
            raise UnsafeExpression(f"character {s[i]!r} not allowed")
        num, name, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif name is not None:
            out.append(("name", name))
        else:
            out.append(("op", "^" if op == "**" else op))
        i = m.end()
    return out


def _expand_names(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Whitelisted names become func/const/var tokens; short unknown letter runs split into variables."""
    out: list[tuple[str, str]] = []
    for kind, text in tokens:
        if kind != "name":
            if kind == "num" and "e" in text.lower():
                exp = int(re.split("[eE]", text)[1])
                if abs(exp) > MAX_EXPONENT:
                    raise UnsafeExpression("exponent too large")
            out.append((kind, text))
            continue
        base, _, sub = text.partition("_")
        if not sub and base in FUNCTIONS:
            out.append(("func", FUNCTIONS[base]))
        elif not sub and base in CONSTANTS:
            out.append(("const", base))
        elif base in GREEK or len(base) == 1:
            out.append(("var", text))
        elif len(base) <= MAX_LETTER_RUN:  # nRT -> n R T; a subscript binds to the last letter (mg_0 -> m g_0)
            out.extend(("var", letter) for letter in base[:-1])
            out.append(("var", base[-1] + (f"_{sub}" if sub else "")))
        else:
            raise UnsafeExpression(f"identifier {text!r} is not whitelisted")
    return out


def _match_paren(tokens: list[tuple[str, str]], i: int, step: int) -> int:
    open_, close = ("(", ")") if step == 1 else (")", "(")
    depth = 0
    while 0 <= i < len(tokens):
        if tokens[i] == ("op", open_):
            depth += 1
        elif tokens[i] == ("op", close):
            depth -= 1
            if depth == 0:
                return i
        i += step
    raise UnsafeExpression("unbalanced parentheses")


def _check_exponent(exponent: list[tuple[str, str]]) -> None:
    """An exponent's size is bounded by the product of its literals (each counted as at least 2), so
    ``x^(1/2)`` and ``10^(-34)`` pass while ``2^(1000*1000)`` is refused; no nested power or exp."""
    bound = 1.0
    for kind, text in exponent:
        if kind == "num":
            bound *= max(abs(float(text)), 2.0)
        elif kind == "func" and text == "exp" or (kind, text) == ("op", "^"):
            raise UnsafeExpression("power tower")
    if bound > MAX_EXPONENT:
        raise UnsafeExpression("exponent too large")


def _check_powers(tokens: list[tuple[str, str]]) -> None:
    """Refuse power towers and exponents beyond +-`MAX_EXPONENT` (the classic ``9**9**9**9`` bomb)."""
    powers = [i for i, t in enumerate(tokens) if t == ("op", "^")]
    if len(powers) > MAX_POWERS:
        raise UnsafeExpression("too many powers")
    for i in powers:
        if i == 0 or i + 1 >= len(tokens):
            raise UnsafeExpression("dangling power")
        if tokens[i - 1] == ("op", ")"):  # (a^b)^c
            j = _match_paren(tokens, i - 1, -1)
            if ("op", "^") in tokens[j:i]:
                raise UnsafeExpression("power tower")
        k = i + 1
        if tokens[k] in (("op", "-"), ("op", "+")):
            k += 1
        if k >= len(tokens):
            raise UnsafeExpression("dangling power")
        if tokens[k] == ("op", "("):
            end = _match_paren(tokens, k, 1)
            exponent = tokens[k : end + 1]
            if ("op", "^") in exponent:
                raise UnsafeExpression("power tower")
        elif tokens[k][0] in ("num", "var", "const"):
            end, exponent = k, [tokens[k]]
        else:
            raise UnsafeExpression("unsupported exponent")
        _check_exponent(exponent)
        if end + 1 < len(tokens) and tokens[end + 1] == ("op", "^"):
            raise UnsafeExpression("power tower")
    for i, token in enumerate(tokens):  # exp(...) is a power too
        if token == ("func", "exp") and i + 1 < len(tokens) and tokens[i + 1] == ("op", "("):
            _check_exponent(tokens[i + 1 : _match_paren(tokens, i + 1, 1) + 1])


def to_sympy_source(answer: str) -> tuple[str, list[str]]:
    """Check ``answer`` against the whitelist and return (canonical source for ``parse_expr``, variable names).

    Variables are renamed ``V_<name>`` (so ``lambda``, ``E`` or ``I`` are plain symbols), multiplication is
    made explicit, ``^`` becomes ``**``. Raises `UnsafeExpression` when anything is refused.
    """
    if not isinstance(answer, str) or len(answer) > MAX_INPUT_CHARS:
        raise UnsafeExpression("too long")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in answer):
        raise UnsafeExpression("control characters")
    return _source(normalize(answer))


def _source(s: str) -> tuple[str, list[str]]:
    """`to_sympy_source` on an already normalised string."""
    if len(s) > MAX_EXPR_CHARS:
        raise UnsafeExpression("too long")
    if not s.isascii():
        raise UnsafeExpression("non-ASCII characters")
    tokens = _expand_names(_tokens(s))
    if not tokens:
        raise UnsafeExpression("empty")
    _check_powers(tokens)
    out: list[str] = []
    names: set[str] = set()
    operand_end = {"num", "var", "const"}
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        prev = tokens[i - 1] if i else None
        if (
            prev is not None
            and (prev[0] in operand_end or prev == ("op", ")"))
            and (kind in ("num", "var", "const", "func") or (kind, text) == ("op", "("))
        ):
            out.append("*")  # implicit multiplication: 2x, x(y+1), (a)(b)
        if kind == "func":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt == ("op", "("):
                out.append(text)
            elif nxt is not None and nxt[0] in ("num", "var", "const"):  # \sin\theta -> sin(theta)
                out.append(f"{text}({_emit(nxt, names)})")
                i += 2
                continue
            else:
                raise UnsafeExpression(f"function {text} without an argument")
        elif kind == "op":
            out.append("**" if text == "^" else text)
        else:
            out.append(_emit((kind, text), names))
        i += 1
    return " ".join(out), sorted(names)


def _emit(token: tuple[str, str], names: set[str]) -> str:
    kind, text = token
    if kind == "var":
        names.add(f"V_{text}")
        return f"V_{text}"
    return text


def is_safe_expression(answer: str) -> bool:
    """True when `to_sympy_source` accepts ``answer``."""
    try:
        to_sympy_source(answer)
    except (UnsafeExpression, RecursionError):
        return False
    return True


# --- sandboxed sympy worker ---------------------------------------------------------------------------


class _Worker:
    """One long-lived sympy process (importing sympy costs ~0.5 s, so it is kept between calls), killed and
    restarted on timeout. One request at a time; a forked child starts its own worker. ``argv`` is the
    worker command (the sandboxed sympy script by default)."""

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
            raise RuntimeError("the sympy worker did not start")

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


def sympy_equivalent(a: str, b: str, *, rel_tol: float = 1e-6, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """Compare two expressions in the sandboxed worker (both must pass the whitelist; else False)."""
    try:
        src_a, names_a = to_sympy_source(a)
        src_b, names_b = to_sympy_source(b)
    except (UnsafeExpression, RecursionError):
        return False
    return _run_worker(src_a, names_a, src_b, names_b, rel_tol, timeout)


def _run_worker(src_a: str, names_a: list[str], src_b: str, names_b: list[str], rel_tol: float, timeout: float) -> bool:
    payload = {
        "a": src_a,
        "b": src_b,
        "symbols": sorted(set(names_a) | set(names_b)),
        "rel_tol": rel_tol,
        "cpu_s": max(1, round(timeout)),
    }
    reply = _WORKER.request(payload, timeout)
    return bool(reply and reply.get("equivalent") is True)


def is_equivalent(pred: str | None, ref: str, *, rel_tol: float = 1e-6, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when ``pred`` and ``ref`` denote the same number or expression.

    Both may be equations (``x = 3``, ``T = 2\\pi\\sqrt{l/g}``): the right-hand sides are compared. Plain
    numbers compare exactly (up to ``rel_tol``) without spawning anything; expressions are checked by
    the sandboxed sympy worker within ``timeout`` seconds. Anything refused by the whitelist is unequal.
    """
    if not isinstance(pred, str) or not isinstance(ref, str) or len(pred) > MAX_INPUT_CHARS:
        return False
    if any(ord(c) < 32 and c not in "\t\n\r" for c in pred):
        return False
    try:
        p, r = _rhs(normalize(pred)), _rhs(normalize(ref))
        if not p or not r:
            return False
        if p.replace(" ", "") == r.replace(" ", ""):
            return True
        pn, rn = _number(p), _number(r)
        if pn is not None and rn is not None:
            return numbers_close(pn, rn, rel_tol)
        src_p, names_p = _source(p)
        src_r, names_r = _source(r)
    except (UnsafeExpression, RecursionError):
        return False
    return _run_worker(src_p, names_p, src_r, names_r, rel_tol, timeout)

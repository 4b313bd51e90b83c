"""Sandboxed sympy worker for `tasks.text.equivalence` (run as a script, never imported by the package).

Reads one JSON request per line on stdin, writes one JSON reply per line on stdout. Requests hold two
expressions that `equivalence.to_sympy_source` already reduced to whitelisted tokens; this process only
parses them with sympy's ``parse_expr`` (no builtins, only the names it is given) and compares them
numerically at random points. Memory is capped with RLIMIT_AS and each request's CPU time with
RLIMIT_CPU (exceeding it kills the process; the parent restarts it), on top of the parent's wall-clock
timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import resource
import sys

MEMORY_BYTES = 1 << 30


def _limit_memory() -> None:
    # some platforms refuse RLIMIT_AS; the parent's wall-clock timeout still applies
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _limit_cpu(seconds: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _namespace(sympy, symbols: list[str]) -> tuple[dict, dict]:
    local = {
        "sqrt": sympy.sqrt,
        "sin": sympy.sin,
        "cos": sympy.cos,
        "tan": sympy.tan,
        "asin": sympy.asin,
        "acos": sympy.acos,
        "atan": sympy.atan,
        "sinh": sympy.sinh,
        "cosh": sympy.cosh,
        "tanh": sympy.tanh,
        "exp": sympy.exp,
        "log": sympy.log,
        "Abs": sympy.Abs,
        "pi": sympy.pi,
    }
    for name in symbols:
        if not name.startswith("V_") or not name.replace("_", "").isalnum():
            raise ValueError(f"bad symbol name {name!r}")
        local[name] = sympy.Symbol(name, positive=True)
    glob = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational, "__builtins__": {}}
    return local, glob


def _close(a: complex, b: complex, rel_tol: float) -> bool:
    if not (math.isfinite(a.real) and math.isfinite(a.imag) and math.isfinite(b.real) and math.isfinite(b.imag)):
        return False
    return abs(a - b) <= max(rel_tol * max(abs(a), abs(b)), 1e-12)


def equivalent(sympy, parse_expr, transformations, req: dict) -> bool:
    local, glob = _namespace(sympy, req["symbols"])
    a = parse_expr(req["a"], local_dict=dict(local), global_dict=dict(glob), transformations=transformations)
    b = parse_expr(req["b"], local_dict=dict(local), global_dict=dict(glob), transformations=transformations)
    rel_tol = max(float(req.get("rel_tol", 1e-6)), 1e-12)
    if a == b or (a - b) == 0:
        return True
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        try:
            return _close(complex(sympy.N(a, 30)), complex(sympy.N(b, 30)), rel_tol)
        except (TypeError, ValueError, OverflowError):
            return False
    rng = random.Random(0)
    checked = 0
    for _ in range(8):
        subs = {s: sympy.Float(rng.uniform(0.3, 3.0), 30) for s in symbols}
        try:
            va, vb = complex(a.evalf(30, subs=subs)), complex(b.evalf(30, subs=subs))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            continue
        if not (math.isfinite(abs(va)) and math.isfinite(abs(vb))):
            continue
        if not _close(va, vb, rel_tol):
            return False
        checked += 1
    if checked >= 3:
        return True
    return bool(sympy.simplify(a - b) == 0)


def main() -> None:
    _limit_memory()
    import sympy
    from sympy.parsing.sympy_parser import auto_number, parse_expr

    transformations = (auto_number,)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            req = json.loads(line)
            _limit_cpu(int(req.get("cpu_s", 2)))
            reply = {"equivalent": equivalent(sympy, parse_expr, transformations, req)}
        except Exception as e:  # any failure is "not equivalent"; the reason goes back to the parent
            reply = {"equivalent": False, "error": f"{type(e).__name__}: {e}"[:200]}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()

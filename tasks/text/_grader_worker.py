"""Sandboxed math-verify worker for `tasks.text.equivalence` (run as a script, never imported by the package).

Reads one JSON request per line on stdin (``pred``, ``ref``, ``rel_tol``, ``strict_units``, ``cpu_s``) and
writes one JSON reply per line (``{"equivalent": bool}``, plus ``error`` when something failed). Each
answer is wrapped as inline LaTeX (``$...$``), parsed with math-verify's ``parse`` and compared with its
``verify`` (reference first: math-verify is not symmetric). Memory is capped with RLIMIT_AS and each
request's CPU time with RLIMIT_CPU (exceeding it kills the process; the parent restarts it), on top of
math-verify's own alarms and the parent's wall-clock timeout. The parent has already refused what
`equivalence.refusal` refuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import resource
import sys

MEMORY_BYTES = 1 << 30
ROUND_DECIMALS = 6  # equivalence.ROUND_DECIMALS
FLOAT_REL_GUARD = 1e-3  # equivalence.FLOAT_REL_GUARD
_DOLLAR_RE = re.compile(r"(?<!\\)\$")


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


def as_latex(answer: str) -> str:
    """An extracted answer as math-verify expects to find it: inline LaTeX, its own ``$`` removed."""
    return f"${_DOLLAR_RE.sub('', answer).strip()}$"


def _value(expr) -> complex | None:
    """The number an expression evaluates to (no free symbols), else None."""
    try:
        if getattr(expr, "free_symbols", True) or not expr.is_number:
            return None
        value = complex(expr.evalf(30))
    except Exception:  # anything sympy cannot evaluate is not a number here
        return None
    return value if math.isfinite(value.real) and math.isfinite(value.imag) else None


def _floats_agree(gold: list, pred: list) -> bool:
    """The guard on math-verify's 6-decimal rounding: two numbers that differ by at most 1e-6 (so rounding
    may have made them equal) must also agree to `FLOAT_REL_GUARD` relatively (``1e-8`` is not ``2e-8``)."""
    a, b = _value(gold[0]), _value(pred[0])
    if a is None or b is None:
        return True
    diff = abs(a - b)
    return not (0 < diff <= 10.0**-ROUND_DECIMALS and diff > FLOAT_REL_GUARD * max(abs(a), abs(b)))


def _close(gold: list, pred: list, rel_tol: float) -> bool:
    a, b = _value(gold[0]), _value(pred[0])
    return a is not None and b is not None and abs(a - b) <= rel_tol * max(abs(a), abs(b))


def grade(mv, configs: dict, req: dict) -> bool:
    """math-verify's verdict on one request, with the float guard and the optional relative tolerance."""
    extraction = configs[bool(req.get("strict_units"))]
    seconds = max(1, int(req.get("cpu_s", 2)))
    gold = mv.parse(as_latex(req["ref"]), extraction_config=extraction, parsing_timeout=seconds)
    pred = mv.parse(as_latex(req["pred"]), extraction_config=extraction, parsing_timeout=seconds)
    if not gold or not pred:
        return False
    if mv.verify(gold, pred, float_rounding=ROUND_DECIMALS, timeout_seconds=seconds):
        return _floats_agree(gold, pred)
    rel_tol = req.get("rel_tol")
    return rel_tol is not None and _close(gold, pred, float(rel_tol))


def _configs(mv) -> dict:
    """Extraction configs by ``strict_units``: math-verify's defaults, or the same keeping units."""
    from latex2sympy2_extended.math_normalization import NormalizationConfig

    keep_units = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True,
                                     boxed="all", equations=False)
    return {
        False: [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
        True: [mv.LatexExtractionConfig(normalization_config=keep_units), mv.ExprExtractionConfig()],
    }


def main() -> None:
    _limit_memory()
    logging.disable(logging.CRITICAL)  # math-verify logs timeouts as warnings; the reply says it all
    import math_verify as mv

    configs = _configs(mv)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            req = json.loads(line)
            _limit_cpu(int(req.get("cpu_s", 2)))
            reply = {"equivalent": grade(mv, configs, req)}
        except Exception as e:  # any failure is "not equivalent"; the reason goes back to the parent
            reply = {"equivalent": False, "error": f"{type(e).__name__}: {e}"[:200]}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()

import sys
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.text import equivalence
from tasks.text.equivalence import (
    UnsafeExpression,
    is_equivalent,
    is_safe_expression,
    numbers_close,
    parse_number,
    sympy_equivalent,
    to_sympy_source,
)


@pytest.fixture
def no_worker(monkeypatch):
    """Fail the test if anything reaches the sympy worker."""

    def refuse(*args, **kwargs):
        raise AssertionError("the sympy worker was called")

    monkeypatch.setattr(equivalence._WORKER, "request", refuse)


@pytest.mark.parametrize(
    "text, value",
    [
        ("42", Fraction(42)),
        ("-0.5", Fraction(-1, 2)),
        ("3/4", Fraction(3, 4)),
        ("-3/4", Fraction(-3, 4)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"\dfrac{-6}{8}", Fraction(-3, 4)),
        ("1.5e3", Fraction(1500)),
        ("2E-2", Fraction(1, 50)),
        (r"1.5 \times 10^{3}", Fraction(1500)),
        ("1.5*10^-2", Fraction(3, 200)),
        ("25,000", Fraction(25000)),
        ("x = 7", Fraction(7)),
        ("$12$", Fraction(12)),
        ("(5)", Fraction(5)),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["x", "2x", "1/0", "1e99999", "10^1001", "1,2", "", "sqrt(2)", "3 4", "1..2"])
def test_parse_number_refuses(text):
    assert parse_number(text) is None


def test_numbers_close():
    assert numbers_close(Fraction(1), Fraction(1))
    assert numbers_close(100, 100.5, rel_tol=1e-2) and not numbers_close(100, 102, rel_tol=1e-2)
    assert not numbers_close(10**30, 10**30 + 1, rel_tol=0)
    assert numbers_close(0, 1e-13)


@pytest.mark.parametrize(
    "pred, ref, rel_tol, same",
    [
        ("0.75", "3/4", 1e-6, True),
        (r"\frac{3}{4}", "0.75", 1e-6, True),
        ("x = -2", "-2", 1e-6, True),
        ("1500", r"1.5\times10^{3}", 1e-6, True),
        ("0.7501", "3/4", 1e-6, False),
        ("0.7501", "3/4", 1e-3, True),
        ("123456789012345678901", "123456789012345678902", 0, False),  # exact: no float rounding
        ("123456789012345678901", "123456789012345678902", 1e-6, True),
        ("4", "5", 1e-6, False),
    ],
)
def test_numbers_never_spawn(no_worker, pred, ref, rel_tol, same):
    assert is_equivalent(pred, ref, rel_tol=rel_tol) is same


def test_expressions_in_the_worker():
    assert is_equivalent(r"\frac{I_{0}a}{2r} \sin (\theta /2)", "I_0 a sin(theta/2)/(2 r)")
    assert not is_equivalent(r"\frac{I_{0}a}{2r} \sin (\theta /2)", "I_0 a sin(theta)/(2 r)")
    assert is_equivalent(r"T = 2 \pi \sqrt{\frac{3a}{2g}}", r"2\pi\sqrt{1.5 a/g}")
    assert is_equivalent(r"W = nRT\ln 2", "n*R*T*log(2)")
    assert not is_equivalent(r"W = nRT\ln 2", "nRT")
    assert is_equivalent(r"d = r/\sqrt{10}", r"\frac{r\sqrt{10}}{10}")
    assert is_equivalent(r"\sqrt{2}", "1.41421356237") and not is_equivalent(r"\sqrt{2}", "1.4142")
    assert is_equivalent(r"\sqrt{2}", "1.4142", rel_tol=1e-4)
    assert is_equivalent(r"\lambda^2", "lambda*lambda") and is_equivalent("(x+1)^2", "x^2 + 2x + 1")


def test_sources_are_canonical():
    src, names = to_sympy_source(r"\frac{nRT}{V}")
    assert src == "( ( V_n * V_R * V_T ) / ( V_V ) )" and names == ["V_R", "V_T", "V_V", "V_n"]
    assert to_sympy_source(r"2\sin\theta")[0] == "2 * sin(V_theta)"
    assert to_sympy_source("lambda + E + I")[1] == ["V_E", "V_I", "V_lambda"]  # keywords and sympy names are symbols


CRAFTED = [
    "__import__('os').system('true')",
    "__import__",
    "import os",
    "os.system('true')",
    "x.__class__",
    "().__class__.__bases__",
    "eval(1)",
    "exec",
    "lambda: 1",
    "open('/etc/passwd')",
    "'a' * 9",
    "[1, 2]",
    "{1: 2}",
    "9**9**9**9",
    "9^9^9^9",
    "(2^9)^9^9",
    "((2^10)^10)^10",
    "2^(1000*1000)",
    "10^1001",
    "2**99999999",
    "1e99999",
    "exp(exp(exp(1000)))",
    "exp(10^9)",
    "x" * 5_000_000,
    "1" * 1_000_000,
    "(" * 100_000 + "1" + ")" * 100_000,
    r"\frac{" * 10_000,
    "\\alpha" * 1_500,  # under the input cap, over the expression cap after normalisation
    "{" * 4_000 + "x" + "}" * 4_000,
    r"\frac{\frac{" * 1_000,
    "1\x002",
    "\x00" * 1_000_000,
    "sinh(cosh(tanh(x)))" + "+x" * 200,
    "abcd + wxyz",
]


@pytest.mark.parametrize("crafted", CRAFTED, ids=range(len(CRAFTED)))
def test_crafted_input_is_refused_quickly_without_the_worker(no_worker, crafted):
    t = time.perf_counter()
    assert not is_safe_expression(crafted)
    assert is_equivalent(crafted, "1") is False
    assert is_equivalent(crafted, "x") is False
    assert parse_number(crafted) is None
    assert time.perf_counter() - t < 3.0


def test_whitelist_raises_a_clear_error():
    with pytest.raises(UnsafeExpression, match="not whitelisted"):
        to_sympy_source("import + x")
    with pytest.raises(UnsafeExpression, match="power tower"):
        to_sympy_source("2^3^4")


def test_worker_timeout_kills_and_restarts():
    """A worker that never answers is killed after the timeout; the next request starts a fresh one."""
    hang = "import sys, time; print('ready', flush=True); sys.stdin.readline(); time.sleep(60)"
    worker = equivalence._Worker([sys.executable, "-c", hang])
    try:
        t = time.perf_counter()
        assert worker.request({"a": "1", "b": "1", "symbols": []}, timeout=0.5) is None
        assert time.perf_counter() - t < 3.0
        assert worker._proc is None  # killed
        assert worker.request({"a": "1", "b": "1", "symbols": []}, timeout=0.2) is None  # restarted, hangs again
    finally:
        worker.close()
    assert sympy_equivalent("x + 3", "3 + x", timeout=2.0)  # the shared worker is unaffected


def test_worker_executes_nothing_even_if_handed_code(tmp_path):
    """Defence in depth: the worker gets no builtins, so even bypassing the whitelist runs nothing."""
    marker = tmp_path / "pwned"
    for src in (f"open({str(marker)!r}, 'w')", "__import__('os').getpid()"):
        reply = equivalence._WORKER.request({"a": src, "b": "1", "symbols": []}, timeout=5.0)
        assert reply is not None and reply["equivalent"] is False and "error" in reply
    assert not marker.exists()


@settings(max_examples=25, deadline=None)
@given(num=st.integers(-(10**6), 10**6), den=st.integers(1, 10**4))
def test_fraction_forms_agree(num, den):
    f = Fraction(num, den)
    assert parse_number(f"{num}/{den}") == f
    assert parse_number(rf"\frac{{{num}}}{{{den}}}") == f
    assert is_equivalent(f"{num}/{den}", repr(float(f)), rel_tol=1e-9)
    assert not is_equivalent(f"{num}/{den}", f"{num + 1}/{den}", rel_tol=0)

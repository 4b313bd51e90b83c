import gc
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.text.extract import MAX_CHARS, all_boxed, answer_tag, extract_answer, has_explicit_answer, last_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{x^{2^{3}}} done", "x^{2^{3}}"),
        (r"first \boxed{1} then \boxed{2} finally \boxed{3}", "3"),  # the last box wins
        (r"\boxed{ $42$ }.", "42"),  # $ and whitespace stripped
        (r"\boxed{\boxed{7}}", "7"),  # a box around the whole answer is unwrapped
        (r"\boxed{\text{A: knight}}", "A: knight"),
        (r"\boxed {5}", "5"),
        (r"\fbox{9}", "9"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not count
        (r"\boxed{3} and an unclosed \boxed{4", "3"),  # an unclosed last box is skipped
        ("reasoning <answer> 12 </answer>", "12"),
        (r"<ANSWER>\boxed{5}</ANSWER> then \boxed{6}", "5"),  # the answer block wins, its box inside it
        (r"\boxed{6} <answer>seven</answer>", "seven"),
        ("<answer>1</answer> ... <answer>2</answer>", "2"),
    ],
)
def test_explicit_answers(text, expected):
    assert extract_answer(text) == expected
    assert has_explicit_answer(text)


def test_no_answer_is_none():
    assert extract_answer("I am not sure.", fallback=False) is None
    assert extract_answer("I am not sure.") is None
    assert extract_answer("") is None and extract_answer(None) is None
    assert extract_answer(r"\boxed{}") is None and extract_answer("<answer> </answer>") is None
    assert not has_explicit_answer("the answer is 3")
    assert answer_tag("<answer>unclosed") is None and last_boxed(r"\boxed{open") is None


def test_fallbacks():
    assert extract_answer("So the final answer is 42.") == "42"
    assert extract_answer("Answer: x = 3\n") == "x = 3"
    assert extract_answer("we get 3 apples, then 17") == "17"  # last number
    assert extract_answer("total 1,234") == "1234"
    assert extract_answer("the answer is 42.", fallback=False) is None


def test_all_boxed_keeps_order_and_skips_nested():
    text = r"\boxed{a} \boxed{b \boxed{c}} \boxed{d{e}} \boxed{unclosed"
    assert all_boxed(text) == ["a", r"b \boxed{c}", "d{e}"]


def test_only_the_tail_is_read():
    far = r"\boxed{early}" + "x" * (MAX_CHARS + 10)
    assert extract_answer(far, fallback=False) is None
    assert extract_answer(far + r"\boxed{late}") == "late"


@pytest.mark.parametrize(
    "junk",
    [
        "{" * 1_000_000,
        "}" * 1_000_000,
        "\\boxed{" * 200_000,
        "\\" * 1_000_000,
        "<answer>" * 200_000,
        "\x00" * 2_000_000,
        "answer is " * 200_000,
        " " * 1_000_000 + "answer:",
        "1," * 500_000,
    ],
)
def test_megabytes_of_junk_are_fast(junk):
    # A full garbage collection of the test process's heap once took 0.5 s inside this window in CI, so collect first
    # and keep the collector off while timing.
    gc.collect()
    gc.disable()
    try:
        t = time.thread_time()  # this thread's CPU time: other jobs, and other threads of this process, do not count
        extract_answer(junk)
        all_boxed(junk)
        has_explicit_answer(junk)
        took = time.thread_time() - t
    finally:
        gc.enable()
    assert took < 0.5  # linear scans take ~0.01 s here; a quadratic one, minutes


def test_binary_input():
    blob = bytes(range(256)) * 8192 + rb"\boxed{ok}"
    assert extract_answer(blob) == "ok"
    assert extract_answer(b"\xff\xfe\x00\x01", fallback=False) is None
    assert extract_answer(b"\xff\x00 answer: 7") == "7"


@settings(max_examples=25, deadline=None)
@given(
    prefix=st.text(alphabet=st.characters(blacklist_characters="\\{}<>$"), max_size=300),
    answer=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9+\-*/ ]{0,20}[A-Za-z0-9]", fullmatch=True),
)
def test_box_after_any_text_is_found(prefix, answer):
    assert extract_answer(f"{prefix} \\boxed{{{answer}}}") == answer.strip()

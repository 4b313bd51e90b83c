"""Final-answer extraction from model output: ``\\boxed{...}``, ``<answer>...</answer>`` and fallbacks.

Everything here is linear in the text it looks at, and it looks at a bounded tail of the output (the last
`MAX_CHARS` characters by default): a megabyte of junk, binary bytes or a million unmatched braces cost
the same as a short answer. No regex here can backtrack catastrophically (no nested quantifiers).
"""

from __future__ import annotations

import re

MAX_CHARS = 4096  # the final answer is at the end; long outputs are cut to their tail
_BOX_MACROS = ("\\boxed", "\\fbox")
_WRAPPERS = ("\\boxed{", "\\fbox{", "\\text{", "\\textbf{", "\\mathrm{")
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_FINAL_RE = re.compile(r"\b(?:final\s+answer|answer)\s{0,5}(?:is|:|=)\s{0,5}([^\n]{1,200})", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _as_text(text: str | bytes | None, max_chars: int) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text[-4 * max_chars :]).decode("utf-8", errors="replace")
    return text[-max_chars:].replace("\x00", "")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the ``{...}`` group opening at ``text[start]`` (nested braces balanced, ``\\{`` and
    ``\\}`` skipped) and the index after it, or None if it never closes."""
    close = _match_braces(text, start).get(start)
    return None if close is None else (text[start + 1 : close], close + 1)


def _match_braces(text: str, start: int = 0) -> dict[int, int]:
    """Index of each ``{`` (from ``start`` on) -> index of its matching ``}``, in one linear pass.
    Escaped braces (``\\{``, ``\\}``) do not count; unclosed ``{`` are absent."""
    match: dict[int, int] = {}
    stack: list[int] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            match[stack.pop()] = i
        i += 1
    return match


def _box_starts(text: str) -> list[tuple[int, int]]:
    """(macro start, index of its ``{``) for every ``\\boxed{``/``\\boxed {``/``\\fbox{`` in order."""
    starts = []
    for macro in _BOX_MACROS:
        i = text.find(macro)
        while i != -1:
            j = i + len(macro)
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{":
                starts.append((i, j))
            i = text.find(macro, i + 1)
    return sorted(starts)


def all_boxed(text: str | bytes | None, max_chars: int = 65536) -> list[str]:
    """Every top-level ``\\boxed{...}`` content in order (a box inside a box is part of its parent).

    Unclosed boxes are skipped. Used to read several sub-answers from one output (HiPhO-style exams).
    """
    text = _as_text(text, max_chars)
    starts = _box_starts(text)
    if not starts:
        return []
    match = _match_braces(text, starts[0][1])
    out, end = [], 0
    for start, brace in starts:
        if start < end or brace not in match:  # nested in the previous box, or never closed
            continue
        end = match[brace] + 1
        out.append(clean_answer(text[brace + 1 : end - 1]))
    return out


def last_boxed(text: str | bytes | None, max_chars: int = MAX_CHARS) -> str | None:
    """Content of the last complete top-level ``\\boxed{...}`` (or ``\\fbox{...}``), cleaned; None if none."""
    boxes = all_boxed(text, max_chars)
    return boxes[-1] if boxes else None


def answer_tag(text: str | bytes | None, max_chars: int = MAX_CHARS) -> str | None:
    """Content of the last closed ``<answer>...</answer>`` (case-insensitive), raw; None if none."""
    text = _as_text(text, max_chars)
    low = text.lower()
    close = low.rfind(_ANSWER_CLOSE)
    if close == -1:
        return None
    open_ = low.rfind(_ANSWER_OPEN, 0, close)
    if open_ == -1:
        return None
    return text[open_ + len(_ANSWER_OPEN) : close]


def clean_answer(s: str) -> str:
    """Strip whitespace, ``$`` signs, ``\\(``/``\\)``, ``\\text{...}`` wrappers and a trailing period."""
    s = s.replace("\x00", "").strip()
    for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b):
            s = s[len(a) : -len(b)]
    s = s.replace("$", "").strip()
    for _ in range(8):  # unwrap \\boxed{\\boxed{3}}, \\text{knight}: a wrapper around the whole answer
        wrapper = next((w for w in _WRAPPERS if s.startswith(w) and s.endswith("}")), None)
        if wrapper is None or _braced(s, len(wrapper) - 1) != (s[len(wrapper) : -1], len(s)):
            break
        s = s[len(wrapper) : -1].replace("$", "").strip()
    return s.rstrip(".").strip()


def extract_answer(text: str | bytes | None, *, fallback: bool = True, max_chars: int = MAX_CHARS) -> str | None:
    """The model's final answer.

    Order: the last ``<answer>...</answer>`` block (its last ``\\boxed{}`` if it holds one), else the last
    ``\\boxed{...}``; then, with ``fallback``, a trailing "final answer: X" / "answer is X" phrase, else the
    last number in the text. None when nothing is found or the answer is empty.
    """
    tail = _as_text(text, max_chars)
    tagged = answer_tag(tail, max_chars)
    if tagged is not None:
        inner = last_boxed(tagged, max_chars)
        got = inner if inner is not None else clean_answer(tagged)
        return got or None
    boxed = last_boxed(tail, max_chars)
    if boxed is not None:
        return boxed or None
    if not fallback:
        return None
    matches = list(_FINAL_RE.finditer(tail[-1024:]))
    if matches:
        got = clean_answer(matches[-1].group(1))
        if got:
            return got
    numbers = _NUMBER_RE.findall(tail[-1024:])
    return numbers[-1].replace(",", "") if numbers else None


def has_explicit_answer(text: str | bytes | None, max_chars: int = MAX_CHARS) -> bool:
    """True when the output marks its answer with a closed ``\\boxed{}`` or ``<answer>`` block."""
    tail = _as_text(text, max_chars)
    return answer_tag(tail, max_chars) is not None or last_boxed(tail, max_chars) is not None

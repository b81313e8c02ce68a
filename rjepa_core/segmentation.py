"""Step segmentation (SPEC F2): text → steps with exact character spans, and steps → token spans.

    >>> [s.text for s in segment("Step 1: 2+3=5\\nStep 2: 5*2=10\\nAnswer: 10")]
    ['2+3=5', '5*2=10']
    >>> strip_annotations("3*4=<<3*4=12>>12 eggs")
    '3*4=12 eggs'
    >>> extract_final_answer("... so 7 apples.\\n#### 7")
    '7'
    >>> render_chain(["2+3=5", "5*2=10"], "10")
    'Step 1: 2+3=5\\nStep 2: 5*2=10\\nAnswer: 10'

`token_spans` maps character spans onto one tokenization of the full text (its offset mapping),
so step ↔ token boundaries are exact without re-tokenizing prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MODES = ("auto", "guided", "gsm8k", "lines", "sentences")

_STEP_MARKER = re.compile(r"\bStep\s*(\d+)\s*[:.)]", re.IGNORECASE)
# A whole segment that only states the final answer ("#### 7", "Answer: 7", "So the answer is 7").
_FINAL_SEGMENT = re.compile(
    r"^(?:(?:so|therefore|thus|hence|finally)\s*,?\s*)?"
    r"(?:####|(?:the\s+)?(?:final\s+)?answer\s*(?:is\b|:)|\\boxed\{)",
    re.IGNORECASE,
)
# Where a guided chain ends: a final-answer line, or an inline "Answer:" / "####".
_GUIDED_END = re.compile(
    r"(?m)^[ \t]*(?:the\s+(?:final\s+)?answer\s+is\b|final\s+answer\s*:|answer\s*:)|\bAnswer\s*:|####",
    re.IGNORECASE,
)
_TRAILING_LIST_NUMBER = re.compile(r"\n\s*(?:[-*•]|\d+[.)])\s*$")
_LIST_MARKER = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+|\s+(?=(?:Therefore|So|Finally|Thus|Hence)\b)")
_ANNOTATION = re.compile(r"<<[^<>]*>>")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


@dataclass(frozen=True)
class Segment:
    text: str  # the step, without surrounding whitespace; always == source[start:end]
    start: int  # first character in the source text
    end: int  # one past the last character


def _span(text: str, start: int, end: int) -> Segment | None:
    """Trimmed segment of text[start:end], or None when it is blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Segment(text[start:end], start, end) if end > start else None


def _is_final(seg: Segment) -> bool:
    return bool(_FINAL_SEGMENT.match(seg.text))


def _lines(text: str) -> list[Segment]:
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        seg = _span(text, pos, pos + len(line))
        pos += len(line)
        if seg is not None:
            out.append(seg)
    return out


def _guided(text: str) -> list[Segment]:
    markers = list(_STEP_MARKER.finditer(text))
    if not markers:
        return []
    stop = _GUIDED_END.search(text, markers[0].end())
    limit = stop.start() if stop else len(text)
    out = []
    for i, m in enumerate(markers):
        if m.start() >= limit:
            break
        end = min(markers[i + 1].start() if i + 1 < len(markers) else limit, limit)
        # "1. Step 1: ...\n2. Step 2: ...": the next line's list number belongs to neither step
        trailing = _TRAILING_LIST_NUMBER.search(text, m.end(), end)
        if trailing is not None:
            end = trailing.start()
        seg = _span(text, m.end(), end)
        if seg is not None:
            out.append(seg)
    return out


def _line_steps(text: str, strip_list_markers: bool) -> list[Segment]:
    out = []
    for seg in _lines(text):
        if _is_final(seg):
            continue
        m = _LIST_MARKER.match(seg.text) if strip_list_markers else None
        if m:
            seg = _span(text, seg.start + m.end(), seg.end)
        if seg is not None:
            out.append(seg)
    return out


def _sentences(text: str) -> list[Segment]:
    out, pos = [], 0
    for m in _SENTENCE_BREAK.finditer(text):
        seg = _span(text, pos, m.start())
        if seg is not None:
            out.append(seg)
        pos = m.end()
    seg = _span(text, pos, len(text))
    if seg is not None:
        out.append(seg)
    return [s for s in out if not _is_final(s)]


def segment(text: str, mode: str = "auto") -> list[Segment]:
    """Split a chain of thought into steps; a final-answer line is never a step.

    modes: "guided" ("Step k:" markers, the marker excluded), "gsm8k" (one rationale line per
    step, `<<..>>` kept in the text: use `strip_annotations`), "lines", "sentences" (sentence ends
    and connectives such as Therefore/So/Finally/Thus/Hence), "auto" (guided if markers are found,
    else lines when there is more than one step line, else sentences).
    """
    if mode == "guided":
        return _guided(text)
    if mode == "gsm8k":
        return _line_steps(text, strip_list_markers=False)
    if mode == "lines":
        return _line_steps(text, strip_list_markers=True)
    if mode == "sentences":
        return _sentences(text)
    if mode == "auto":
        guided = _guided(text)
        if guided:
            return guided
        lines = _line_steps(text, strip_list_markers=True)
        return lines if len(lines) > 1 else _sentences(text)
    raise ValueError(f"unknown segmentation mode {mode!r}: use one of {MODES}")


def strip_annotations(s: str) -> str:
    """Remove GSM8K calculator annotations `<<expr=value>>`."""
    return _ANNOTATION.sub("", s)


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with nested braces."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _clean(ans: str) -> str | None:
    ans = ans.strip().rstrip(".").strip()
    return ans or None


def extract_final_answer(text: str) -> str | None:
    """Final answer of a chain: "#### N", "\\boxed{N}", "Answer: N", "The answer is N", else the last number."""
    patterns = (
        r"####\s*([^\n]+)",
        None,  # \boxed{}
        r"(?:final\s+)?answer\s*:\s*([^\n]+)",
        r"the\s+(?:final\s+)?answer\s+is\s*:?\s*([^\n]+)",
    )
    for pat in patterns:
        if pat is None:
            found = _boxed(text)
            if found is not None and _clean(found):
                return _clean(found)
            continue
        matches = re.findall(pat, text, flags=re.IGNORECASE)
        for cand in reversed(matches):
            if _clean(cand):
                return _clean(cand)
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def numbers_in(text: str) -> list[str]:
    """The numbers a text states, in order, in one canonical form ("1,200" and "1200.0" are both "1200").

    >>> numbers_in("3 + 4 = 7, then 1,200 / 2.50 = 480.0")
    ['3', '4', '7', '1200', '5/2', '480']
    """
    from fractions import Fraction

    return [str(Fraction(n.replace(",", ""))) for n in _NUMBER.findall(text)]


def render_chain_spans(steps: list[str], final_answer: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """`render_chain` plus the character span of each step's text inside it."""
    if not steps:
        raise ValueError("a chain needs at least one step to render")
    parts, spans, pos = [], [], 0
    for k, step in enumerate(steps, start=1):
        body = step.strip()
        if not body:
            raise ValueError(f"step {k} is empty: drop empty steps before rendering a chain")
        prefix = f"Step {k}: "
        spans.append((pos + len(prefix), pos + len(prefix) + len(body)))
        line = prefix + body
        parts.append(line)
        pos += len(line) + 1  # the "\n" joining lines
    if final_answer is not None:
        parts.append(f"Answer: {final_answer.strip()}")
    return "\n".join(parts), spans


def render_chain(steps: list[str], final_answer: str | None = None) -> str:
    """Canonical chain text: "Step 1: ...\\nStep 2: ...\\nAnswer: X" (what latents are extracted from)."""
    return render_chain_spans(steps, final_answer)[0]


def token_spans(offsets: list[tuple[int, int]], char_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token [start, end) per character span, from the offset mapping of the full text.

    A token belongs to a span when its characters overlap it, so a token straddling a boundary
    (a leading-space "ĠStep", a step starting mid-token) is kept. Zero-width offsets (special
    tokens) never belong to a span.
    """
    if len(offsets) == 0:
        raise ValueError("empty offset mapping: tokenize the full text with return_offsets_mapping=True")
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = off[:, 0], off[:, 1]
    real = ends > starts
    out = []
    for k, (s, e) in enumerate(char_spans):
        if e <= s:
            raise ValueError(f"character span {k} ({s}, {e}) is empty: steps must be non-empty")
        hit = np.nonzero(real & (starts < e) & (ends > s))[0]
        if hit.size == 0:
            raise ValueError(
                f"no token covers characters [{s}, {e}) of step {k} (text covers up to {int(ends.max())}): "
                "was the text truncated? raise max_length or shorten the chain"
            )
        out.append((int(hit[0]), int(hit[-1]) + 1))
    return out

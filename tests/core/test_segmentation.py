from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rjepa_core.segmentation import (
    extract_final_answer,
    render_chain,
    render_chain_spans,
    segment,
    strip_annotations,
    token_spans,
)

GSM8K = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
    "#### 72"
)


def texts(text: str, mode: str) -> list[str]:
    segs = segment(text, mode)
    for s in segs:
        assert text[s.start : s.end] == s.text
    return [s.text for s in segs]


def test_guided_excludes_markers_preamble_and_answer():
    text = "Let me think.\nStep 1: 2 + 3 = 5\nStep 2: 5 * 2\n= 10\n\nStep 3) check: 10\nAnswer: 10\nStep 4: junk"
    assert texts(text, "guided") == ["2 + 3 = 5", "5 * 2\n= 10", "check: 10"]


def test_guided_inline_markers_and_inline_answer():
    assert texts("Step 1: a is 3. Step 2: b is 4. Answer: 7", "guided") == ["a is 3.", "b is 4."]
    assert texts("no markers here", "guided") == []


def test_gsm8k_keeps_annotations_in_spans_and_drops_final_line():
    segs = segment(GSM8K, "gsm8k")
    assert len(segs) == 2
    assert segs[0].text == "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    assert strip_annotations(segs[0].text) == "Natalia sold 48/2 = 24 clips in May."
    assert strip_annotations(segs[1].text) == "Natalia sold 48+24 = 72 clips altogether in April and May."


def test_lines_strip_list_markers_and_answer_lines():
    text = "  - first 2+2=4  \n\n2. second 4*3=12\n1.5 is a number\nThe answer is 12."
    assert texts(text, "lines") == ["first 2+2=4", "second 4*3=12", "1.5 is a number"]


def test_sentences_split_on_ends_and_connectives_not_decimals():
    text = "We add 2.5 and 3 to get 5.5! Then we double it, giving 11 So the total is 11 Finally we stop. Answer: 11."
    assert texts(text, "sentences") == [
        "We add 2.5 and 3 to get 5.5!",
        "Then we double it, giving 11",
        "So the total is 11",
        "Finally we stop.",
    ]


def test_auto_dispatch():
    assert texts("Step 1: x\nStep 2: y", "auto") == ["x", "y"]
    assert texts("first line\nsecond line\n#### 3", "auto") == ["first line", "second line"]
    # a single line (plus its answer line) falls back to sentences
    assert texts("3+4=7. Therefore 7*2=14.\nAnswer: 14", "auto") == ["3+4=7.", "Therefore 7*2=14."]
    assert segment("Answer: 5") == []


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown segmentation mode"):
        segment("x", "paragraphs")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GSM8K, "72"),
        ("Step 1: 3+4=7\nAnswer: 7.", "7"),
        ("so Final answer: 1,200 ", "1,200"),
        ("We get \\boxed{\\frac{1}{2}} at the end", "\\frac{1}{2}"),
        ("Thus the answer is 42.", "42"),
        ("first 3 then 4.5 and finally -8.", "-8"),
        ("no number", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_render_chain_and_spans():
    text, spans = render_chain_spans([" 2+3=5 ", "5*2=10"], "10")
    assert text == render_chain(["2+3=5", "5*2=10"], "10") == "Step 1: 2+3=5\nStep 2: 5*2=10\nAnswer: 10"
    assert [text[s:e] for s, e in spans] == ["2+3=5", "5*2=10"]
    assert render_chain(["a"]) == "Step 1: a"
    assert [s.text for s in segment(text)] == ["2+3=5", "5*2=10"]
    with pytest.raises(ValueError, match="step 2 is empty"):
        render_chain(["a", "  "])
    with pytest.raises(ValueError, match="at least one step"):
        render_chain([])


_WORDS = st.sampled_from(["Step 1:", "Step 2:", "So", "Therefore", "3+4=7.", "x", "é", "Answer: 5", "####", "\n", " "])


@settings(max_examples=200, deadline=None)
@given(st.lists(_WORDS, max_size=20).map(" ".join), st.sampled_from(["auto", "guided", "gsm8k", "lines", "sentences"]))
def test_segments_are_exact_ordered_trimmed_slices(text, mode):
    segs = segment(text, mode)
    last_end = 0
    for s in segs:
        assert s.text and s.text == s.text.strip() and text[s.start : s.end] == s.text
        assert s.start >= last_end
        last_end = s.end


# ---- token spans -----------------------------------------------------------------------------


def test_token_spans_straddling_and_special_tokens():
    # [BOS](0,0) "Step"(0,4) "Ġ1"(4,6) ":"(6,7) "Ġab"(7,10) "cd"(10,12) [EOS](0,0)
    offsets = [(0, 0), (0, 4), (4, 6), (6, 7), (7, 10), (10, 12), (0, 0)]
    assert token_spans(offsets, [(8, 12)]) == [(4, 6)]  # leading-space token belongs to the step
    assert token_spans(offsets, [(9, 11)]) == [(4, 6)]  # step starting and ending mid-token
    assert token_spans(offsets, [(0, 2)]) == [(1, 2)]  # special (0, 0) tokens never belong
    with pytest.raises(ValueError, match="empty"):
        token_spans(offsets, [(5, 5)])
    with pytest.raises(ValueError, match="truncated"):
        token_spans(offsets, [(20, 25)])


def _norm(s: str) -> str:
    return "".join(s.split())


def _check_exact(tokenizer, text: str, char_spans: list[tuple[int, int]]):
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    spans = token_spans(offsets, char_spans)
    for (cs, ce), (ts, te) in zip(char_spans, spans, strict=True):
        assert te > ts
        decoded = tokenizer.decode(ids[ts:te])
        assert _norm(text[cs:ce]) in _norm(decoded)  # the span covers the whole step
        # and is tight: its first and last tokens carry characters of the step
        assert offsets[ts][0] < ce and offsets[ts][1] > cs
        assert offsets[te - 1][0] < ce and offsets[te - 1][1] > cs
    return spans


STEPS = ["Tom has 12 apples and eats 5: 12 - 5 = 7.", "Café crème costs 2.5 €, ×3 = 7.5 €", "π ≈ 3.14 → 𝛑 done"]


@pytest.fixture(scope="module")
def bpe_tokenizers():
    from rjepa_core.llm.testing import tiny_tokenizer

    return [tiny_tokenizer(trim_offsets=True), tiny_tokenizer(trim_offsets=False)]


@pytest.fixture(scope="module")
def smol_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def _chat_cases(tokenizer):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Solve: 12 - 5 then ×3?"}], tokenize=False, add_generation_prompt=True
    )
    body, spans = render_chain_spans(STEPS, "7.5")
    yield prompt + body, [(len(prompt) + s, len(prompt) + e) for s, e in spans]
    # a step that starts and ends mid-word: "apples" → "ples", "costs" → "cos"
    text = "Tom has 12 apples. Café crème costs 2.5 €"
    i, j = text.index("ples"), text.index("costs") + 3
    yield text, [(i, text.index(".") + 1), (text.index("Café"), j)]
    # free text segmented in auto mode (no markers), unicode and gsm8k annotations
    yield GSM8K, [(s.start, s.end) for s in segment(GSM8K, "gsm8k")]


def test_token_spans_exact_with_byte_level_bpe(bpe_tokenizers):
    for tok in bpe_tokenizers:
        for text, char_spans in _chat_cases(tok):
            _check_exact(tok, text, char_spans)


def test_token_spans_exact_with_smollm2_tokenizer(smol_tokenizer):
    for text, char_spans in _chat_cases(smol_tokenizer):
        spans = _check_exact(smol_tokenizer, text, char_spans)
        assert all(b[0] >= a[1] - 1 for a, b in zip(spans, spans[1:], strict=False))  # ordered, ≤1 shared


def test_guided_steps_drop_the_next_lines_list_number():
    from rjepa_core.segmentation import segment

    text = "1. Step 1: add 7 and 8.\n2. Step 2: 7 + 8 = 15.\n3. Step 3: done.\nAnswer: 15"
    assert [s.text for s in segment(text)] == ["add 7 and 8.", "7 + 8 = 15.", "done."]

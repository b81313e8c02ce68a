"""NUDGE on step latents captured while sampling (`next_steps(capture=...)`) against teacher-forced NUDGE.

Counting, not mocking: the real student's `extract` is wrapped to count its calls, so "no teacher-forced
forward in the loop" is checked on the real object. Agreement with teacher-forced NUDGE is checked on a
tiny student trained to write one canonical chain ("Step k: ..." lines), where the two latents of a line
differ only by float16 rounding (cosines and surprises to 2e-3, whatever the thread count); an alternative
it writes off the canonical rendering has latents of its own text, so only its text is compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rjepa_core.config import ScoreConfig, rjepa_tiny
from rjepa_core.inference.nudge import NudgeConfig, NudgeThreshold, nudge
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.scoring import JEPAScorer
from rjepa_core.llm.testing import overfit_student
from tests.core.llm.test_capture import CHAIN

CANONICAL = ["3 + 4 = 7", "7 × 2 = 14"]  # CHAIN's steps
ALWAYS = NudgeThreshold.constant(-1e9)  # every step is regenerated


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return JEPAScorer(RJEPA(rjepa_tiny(hidden_size=64, question_token=True, max_steps=16)), ScoreConfig())


@pytest.fixture(scope="module")
def writer(tiny_llm_dir):
    return overfit_student(tiny_llm_dir, lambda m: m.prompt_for("What is 3 + 4, times 2?"), CHAIN)


def count_calls(monkeypatch, obj, name: str) -> list[int]:
    """Wrap obj.name (the real method) so that each call is counted; returns the counter."""
    calls, real = [0], getattr(obj, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_captured_nudge_makes_no_teacher_forced_forward(monkeypatch, tiny_student, scorer):
    prompt = tiny_student.prompt_for("What is 3 + 4?")
    cfg = NudgeConfig(m=3, max_new_tokens=40, step_tokens=10, max_steps=3, budget_tokens=10_000, temperature=0.9)
    extracts = count_calls(monkeypatch, tiny_student, "extract")
    captured = nudge(tiny_student, scorer, prompt, cfg, threshold=ALWAYS)
    assert captured.trace and captured.tokens_used > captured.chain_tokens  # lines and alternatives were scored
    assert extracts[0] == 0 and captured.latents == "captured" and captured.latent_fallbacks == 0
    assert captured.H.shape == (len(captured.steps), 64) and captured.q.shape == (64,)
    forced = nudge(
        tiny_student, scorer, prompt, NudgeConfig(**{**cfg.__dict__, "teacher_forced": True}), threshold=ALWAYS
    )
    assert forced.latents == "teacher_forced" and extracts[0] >= 2 * len(
        forced.trace
    )  # the line, then its alternatives


def test_captured_nudge_decides_as_teacher_forced_where_the_latents_agree(writer, scorer):
    llm, prompt = writer
    base = dict(m=3, max_new_tokens=60, step_tokens=30, max_steps=4, budget_tokens=10_000, alt_temperature=0.8)
    captured = nudge(llm, scorer, prompt, NudgeConfig(**base), threshold=ALWAYS)
    forced = nudge(llm, scorer, prompt, NudgeConfig(**base, teacher_forced=True), threshold=ALWAYS)
    assert captured.latents == "captured" and captured.latent_fallbacks == 0
    assert captured.steps == forced.steps == CANONICAL
    assert np.allclose(captured.q, forced.q, atol=2e-3 * np.abs(forced.q).max())
    for c, f in zip(captured.trace, forced.trace, strict=True):
        assert [a.text for a in c.alternatives] == [a.text for a in f.alternatives]
        assert len(c.alternatives) > 1 and c.text == f.text  # (an identical line may win a tie by a rounding)
        assert c.surprise == pytest.approx(f.surprise, abs=2e-3)
        for a, b in zip(c.alternatives, f.alternatives, strict=True):
            if a.text == CANONICAL[c.index]:  # written as the canonical line: the same latent both ways
                assert a.cosine == pytest.approx(b.cosine, abs=2e-3) and a.surprise == pytest.approx(
                    b.surprise, abs=2e-3
                )
    H = llm.extract([(prompt, captured.steps)])[0].H.astype(np.float32)  # the kept chain, teacher-forced
    cos = (captured.H * H).sum(1) / (np.linalg.norm(captured.H, axis=1) * np.linalg.norm(H, axis=1))
    assert cos.min() >= 0.999


def test_a_line_whose_latent_was_not_captured_is_extracted_teacher_forced(monkeypatch, writer, scorer):
    """The alternatives' call loses its latents (as when capture misses a step): those lines fall back to
    teacher-forced extraction of the new step only, counted in the result, and NUDGE decides as before."""
    llm, prompt = writer
    base = dict(m=3, max_new_tokens=60, step_tokens=30, max_steps=4, budget_tokens=10_000, alt_temperature=0.8)
    whole = nudge(llm, scorer, prompt, NudgeConfig(**base), threshold=ALWAYS)
    real, dropped = llm.next_steps, [0]

    def losing_alternatives(context, k=1, *args, **kwargs):
        lines = real(context, k, *args, **kwargs)
        if k > 1:
            dropped[0] += sum(a.latents is not None for a in lines)
            for a in lines:
                a.latents = None
        return lines

    monkeypatch.setattr(llm, "next_steps", losing_alternatives)
    extracts = count_calls(monkeypatch, llm, "extract")
    partial = nudge(llm, scorer, prompt, NudgeConfig(**base), threshold=ALWAYS)
    assert dropped[0] > 0 and partial.latent_fallbacks == dropped[0]
    assert extracts[0] == len(partial.trace)  # one teacher-forced batch per alternatives call, none for the lines
    assert partial.steps == whole.steps and [t.text for t in partial.trace] == [t.text for t in whole.trace]
    # the kept steps' latents agree (a kept step may be a teacher-forced alternative identical to the line)
    assert np.allclose(partial.H, whole.H, atol=2e-3 * float(np.abs(whole.H).max()))

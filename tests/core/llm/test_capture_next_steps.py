"""Step latents captured while `next_steps` samples one line (NUDGE's step-wise generation) against
teacher-forced extraction of the chain prefix.

Tolerance: as tests/core/llm/test_capture.py — the captured states are float16 copies, so a latent differs
from the teacher-forced one by float16 rounding: at most 2e-3 of its largest value, whatever the thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.inference.nudge import _step_text
from rjepa_core.llm.capture import CaptureSpec, CaptureStats
from rjepa_core.llm.testing import overfit_student
from tests.core.llm.test_capture import CHAIN, close, forced_on


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def writer(tiny_llm_dir):
    """A tiny student that writes CHAIN, the canonical rendering of its steps ("Step k: ..." lines)."""
    return overfit_student(tiny_llm_dir, lambda m: m.prompt_for("What is 3 + 4, times 2?"), CHAIN)


@pytest.mark.parametrize(("pooling", "question_pooling"), [("mean", "token"), ("mean_last", "span"), ("last", "token")])
def test_a_written_line_has_the_teacher_forced_latent_of_its_step(writer, pooling, question_pooling):
    llm, prompt = writer
    spec = CaptureSpec(pooling=pooling, question_pooling=question_pooling)
    text, steps = "", []
    for k in (1, 2):  # step 2 follows step 1 in the context: its question latent is read from the context
        line = llm.next_steps(prompt + text, 1, 0.0, 30, 0, capture=spec, prompt=prompt)[0]
        assert line.text == CHAIN.splitlines()[k - 1] and not line.is_answer
        steps.append(_step_text(line.text))
        ex = llm.extract([(prompt, steps)], pooling=pooling, question_pooling=question_pooling)[0]
        lat = line.latents
        assert lat.H.shape == (1, ex.H.shape[1]) and lat.H.dtype == np.float16
        end = ex.step_spans[-1][1]
        assert lat.token_ids[:end] == ex.token_ids[:end]  # the written line round-trips (its newline kept after)
        assert lat.step_spans == ex.step_spans[-1:]
        assert close(lat.H, ex.H[-1:]) and cosine(lat.H, ex.H[-1]) >= 0.999
        assert close(lat.q, ex.q)
        text += line.text + "\n"
    answer = llm.next_steps(prompt + text, 1, 0.0, 30, 0, capture=spec, prompt=prompt)[0]
    assert answer.is_answer and answer.latents is None  # the answer line states no step


def test_captured_lines_are_the_same_samples_with_the_latents_of_their_own_tokens(tiny_student):
    prompt = tiny_student.prompt_for("What is 8 + 6?")
    plain = tiny_student.next_steps(prompt, k=4, temperature=0.9, max_new_tokens=12, seed=3)
    stats = CaptureStats()
    captured = tiny_student.next_steps(
        prompt, k=4, temperature=0.9, max_new_tokens=12, seed=3, capture=True, capture_stats=stats
    )
    assert [(a.text, a.logprob, a.num_tokens) for a in plain] == [(b.text, b.logprob, b.num_tokens) for b in captured]
    with_step = [c for c in captured if not c.is_answer and _step_text(c.text)]
    assert with_step and stats.chains == len(with_step) and stats.missed == 0
    n_prompt = len(tiny_student.tokenizer(prompt)["input_ids"])
    for c in captured:
        if c not in with_step:
            assert c.latents is None
            continue
        lat = c.latents
        assert len(lat.token_ids) == n_prompt + c.num_tokens
        ((s, e),) = lat.step_spans
        assert tiny_student.tokenizer.decode(lat.token_ids[s:e]).strip() == _step_text(c.text)
        assert close(lat.H, forced_on(tiny_student, lat.token_ids, lat.step_spans)[1])


def test_next_steps_capture_checks_its_prompt(tiny_student):
    prompt = tiny_student.prompt_for("What is 3 + 4?")
    with pytest.raises(ValueError, match="start of `context`"):
        tiny_student.next_steps(prompt + "Step 1: 7\n", 1, max_new_tokens=4, capture=True, prompt="Problem: 9")
    with pytest.raises(ValueError, match="question"):  # a plain-string context carries no question to pool
        tiny_student.next_steps(
            str(prompt) + "Step 1: 7\n", 1, max_new_tokens=4, capture=CaptureSpec(question_pooling="span")
        )

"""Step latents captured during sampling (rjepa_core.llm.capture) against teacher-forced extraction.

Tolerance: captured states are kept in float16, teacher-forced ones pool float32 states, so the two
differ by float16 rounding of each token's state: at most 2e-3 of the largest latent value (one float16
ulp is 2^-11 ≈ 4.9e-4 relative). The token sequence differs when the written text does not round-trip
through the tokenizer; the spans must then still cover exactly each step's characters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rjepa_core.llm.capture import CaptureSpec, CaptureStats, generated_offsets
from rjepa_core.llm.extraction import _pool, _question_state, _span_state, layer_output, resolve_layer
from rjepa_core.llm.testing import overfit_student as overfit

TOL = 2e-3  # of max |latent|: float16 storage of the captured states

CHAIN = "Step 1: 3 + 4 = 7\nStep 2: 7 × 2 = 14\nAnswer: 14\n"  # "×" is two bytes in UTF-8


def close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= TOL * float(np.abs(b).max())


def byte_tokens(tokenizer, text: str) -> list[int]:
    """One token per UTF-8 byte (the byte-level alphabet): decodes to `text`, never what tokenizing it gives."""
    # GPT-2's byte -> printable character table: printable bytes map to themselves, the others to 256 + n
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b], n = chr(256 + n), n + 1
    return [tokenizer.convert_tokens_to_ids(table[b]) for b in text.encode("utf-8")]


def forced_on(llm, token_ids, spans, pooling="mean"):
    """Teacher-forced pooled latents over exactly these token ids (no re-tokenization), float32."""
    ids = torch.tensor([token_ids])
    h = layer_output(llm, ids, torch.ones_like(ids), resolve_layer(llm.spec.layer_idx, llm.num_layers))  # (1, S, D)
    return h, _pool(h, [spans], pooling)[0].numpy()


@pytest.mark.parametrize("pooling", ["mean", "last", "mean_last"])
@pytest.mark.parametrize("question_pooling", ["token", "span"])
def test_captured_latents_equal_a_forward_over_the_sampled_tokens(tiny_student, pooling, question_pooling):
    prompts = [tiny_student.prompt_for("What is 3 + 4?"), tiny_student.prompt_for("Tom has 12 apples and eats 5.")]
    stats = CaptureStats()
    spec = CaptureSpec(pooling=pooling, question_pooling=question_pooling)
    out = tiny_student.generate(
        prompts, k=3, max_new_tokens=14, seed=0, batch_size=4, capture=spec, capture_stats=stats
    )
    chains = [c for row in out for c in row]
    assert stats.chains == len(chains) == 6 and stats.missed == 0
    assert stats.extra_steps >= 1  # 14 tokens cut mid-step: the last sampled token was run through the layer
    for prompt, row in zip(prompts, out, strict=True):
        n_prompt = len(tiny_student.tokenizer(prompt)["input_ids"])
        for c in row:
            lat = c.latents
            assert lat.H.dtype == np.float16 and lat.H.shape[0] == len(c.steps or [c.text.strip()])
            assert lat.token_ids[:n_prompt] == tiny_student.tokenizer(prompt)["input_ids"]
            assert len(lat.token_ids) == n_prompt + c.num_new_tokens
            h, H = forced_on(tiny_student, lat.token_ids, lat.step_spans, pooling)
            assert close(lat.H, H)
            if question_pooling == "token":
                q = _question_state(tiny_student, h, 0, lat.step_spans[0][0], pooling)
            else:
                q_at = prompt.rfind(prompt.question)
                offsets = tiny_student.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
                qs = [i for i, (s, e) in enumerate(offsets) if e > q_at and s < q_at + len(prompt.question)]
                q = _span_state(h, 0, (qs[0], qs[-1] + 1), pooling)
            assert close(lat.q, q.numpy())


def test_capture_does_not_change_what_is_sampled(tiny_student):
    prompt = tiny_student.prompt_for("What is 8 + 6?")
    plain = tiny_student.generate(prompt, k=3, max_new_tokens=10, seed=4)[0]
    captured = tiny_student.generate(prompt, k=3, max_new_tokens=10, seed=4, capture=True)[0]
    assert [c.text for c in plain] == [c.text for c in captured]
    assert [c.logprob for c in plain] == [c.logprob for c in captured]
    assert all(c.latents is None for c in plain) and all(c.latents is not None for c in captured)


def test_without_the_extra_step_the_last_token_is_left_out(tiny_student):
    prompt = tiny_student.prompt_for("What is 3 + 4?")
    full = tiny_student.generate(prompt, k=2, max_new_tokens=12, seed=1, capture=True)[0]
    cut = tiny_student.generate(prompt, k=2, max_new_tokens=12, seed=1, capture=CaptureSpec(finish_last=False))[0]
    ended_on_last = 0
    for a, b in zip(full, cut, strict=True):
        (s, e), (s2, e2) = a.latents.step_spans[-1], b.latents.step_spans[-1]
        if e == len(a.latents.token_ids):  # the last step ends on the never-fed last token
            ended_on_last += 1
            assert s == s2 and e2 == e - 1  # ...which is dropped without the extra step
        else:
            assert (s, e) == (s2, e2)
        assert close(b.latents.H, forced_on(tiny_student, b.latents.token_ids, b.latents.step_spans)[1])
    assert ended_on_last >= 1


def test_round_tripping_chain_gives_the_teacher_forced_latents(tiny_llm_dir):
    """The student writes the canonical rendering, tokenized as the tokenizer does: `extract` on its steps
    (prompt + "Step k: ..." re-tokenized) sees the same tokens, and the latents agree."""
    llm, prompt = overfit(tiny_llm_dir, lambda m: m.prompt_for("What is 3 + 4, times 2?"), CHAIN)
    for pooling, qp in [("mean", "token"), ("mean_last", "span")]:
        g = llm.generate(prompt, k=1, temperature=0, max_new_tokens=40, capture=CaptureSpec(None, pooling, qp))[0][0]
        assert g.text == CHAIN.strip() and g.steps == ["3 + 4 = 7", "7 × 2 = 14"]
        ex = llm.extract([(prompt, g.steps)], pooling=pooling, question_pooling=qp)[0]
        assert ex.token_ids == g.latents.token_ids[: len(ex.token_ids)]  # the tokenization round-trips
        assert ex.step_spans == g.latents.step_spans
        assert close(g.latents.H, ex.H) and close(g.latents.q, ex.q)


def test_spans_map_onto_the_generated_tokens_when_tokenization_does_not_round_trip(tiny_llm_dir):
    """The student writes the same text one byte token at a time (a split the tokenizer never makes, with
    "×" across two tokens): spans follow the generated ids, and the latents are those of these tokens."""
    from rjepa_core.llm.testing import tiny_tokenizer

    target = byte_tokens(tiny_tokenizer(), CHAIN)
    llm, prompt = overfit(tiny_llm_dir, lambda m: m.prompt_for("What is 3 + 4, times 2?"), target, steps=120)
    g = llm.generate(prompt, k=1, temperature=0, max_new_tokens=60, capture=True)[0][0]
    assert g.text == CHAIN.strip()
    lat, tok = g.latents, llm.tokenizer
    n_prompt = len(tok(prompt)["input_ids"])
    assert lat.token_ids[n_prompt:] == target[: len(lat.token_ids) - n_prompt]  # what the model wrote
    assert g.token_ids != lat.token_ids[: len(g.token_ids)]  # ...which re-tokenization does not give
    for (s, e), step in zip(lat.step_spans, g.steps, strict=True):
        assert tok.decode(lat.token_ids[s:e]) == step  # each span is exactly its step's bytes
    assert close(lat.H, forced_on(llm, lat.token_ids, lat.step_spans)[1])


def test_generated_offsets_follow_incremental_decoding(tiny_student):
    tok = tiny_student.tokenizer
    text = "Résumé: 5 × 3 = 15"
    for ids in (tok(text, add_special_tokens=False)["input_ids"], byte_tokens(tok, text)):
        offsets = generated_offsets(tok, ids, text)
        assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
        assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:], strict=False))  # contiguous, in order
        assert "".join(text[s:e] for s, e in offsets) == text
    bytes_ = byte_tokens(tok, "×")
    assert generated_offsets(tok, bytes_, "×") == [(0, 0), (0, 1)]  # the completing byte carries the character
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert generated_offsets(tok, [*bytes_, eos], "×")[-1] == (1, 1)  # a special token covers nothing


def test_span_question_pooling_needs_the_question_before_sampling(tiny_student):
    with pytest.raises(ValueError, match="question"):
        tiny_student.generate("Problem: 2 + 2\n", k=1, max_new_tokens=4, capture=CaptureSpec(question_pooling="span"))


def test_latent_clip_bounds_extracted_and_captured_states(tiny_llm_dir):
    """`latent_clip` clamps the hooked layer's states before pooling (teacher-forced) and before the float16 copy
    (captured while sampling): what keeps Gemma-3's massive-activation channel from becoming inf in float16."""
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    free = StudentLLM.load(LLMSpec(llm_tag="t", source=str(tiny_llm_dir), batch_size=4), device="cpu")
    prompt = free.prompt_for("What is 3 + 4?")
    items = [(prompt, ["3 + 4 = 7", "Answer: 7"])]
    top = float(np.abs(free.extract(items)[0].H.astype(np.float32)).max())
    clip = top / 4
    clipped = StudentLLM.load(
        LLMSpec(llm_tag="t", source=str(tiny_llm_dir), batch_size=4, latent_clip=clip), device="cpu"
    )
    H = clipped.extract(items)[0].H.astype(np.float32)
    assert np.abs(H).max() <= clip * 1.001 and np.abs(H).max() > clip * 0.9  # bounded, and the bound is reached
    from rjepa_core.llm.capture import LayerRecorder

    ids = clipped.tokenizer(prompt, return_tensors="pt")
    layer = clipped.layers[resolve_layer(clipped.spec.layer_idx, clipped.num_layers)]
    for bound, ok in ((clip, True), (None, False)):
        with LayerRecorder(layer, clip=bound) as rec, torch.inference_mode():
            clipped.model(**ids)
        states = torch.cat(rec.chunks, dim=1).float()  # (1, S, D) float16 copies, as captured while sampling
        assert bool(states.abs().max() <= clip * 1.001) is ok

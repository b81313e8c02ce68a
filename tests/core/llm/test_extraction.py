from __future__ import annotations

import numpy as np
import pytest
import torch

from rjepa_core.llm.adapter import ChainInput, StudentLLM
from rjepa_core.llm.extraction import encode_with_offsets, extract_float32
from rjepa_core.llm.prefix import new_cache, plan_prefix_groups
from rjepa_core.segmentation import render_chain_spans, token_spans

CHAINS = [
    ["3 + 4 = 7", "7 * 2 = 14", "14 - 5 = 9"],
    ["Tom has 12 apples and eats 5, so 12 - 5 = 7.", "He buys 9 more: 7 + 9 = 16."],
    ["Café: 2.5 € × 4 = 10 €"],
    ["a", "b", "c", "d", "e"],
    ["We add the numbers. Therefore the total is 25, which we check twice to be sure it is right."],
]


def naive_latents(llm: StudentLLM, prompt: str, steps: list[str], layer_idx: int) -> np.ndarray:
    """Reference: one chain alone, all hidden states materialised, spans from the offset mapping."""
    body, char_spans = render_chain_spans(steps)
    text = prompt + body
    enc = llm.tokenizer(text, return_offsets_mapping=True)
    spans = token_spans(enc["offset_mapping"], [(len(prompt) + s, len(prompt) + e) for s, e in char_spans])
    with torch.no_grad():
        out = llm.model(torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    # hidden_states[0] is the embeddings, so layer i's output is hidden_states[i + 1]
    h = out.hidden_states[layer_idx % llm.num_layers + 1][0]  # (S, D)
    return np.stack([h[s:e].float().mean(0).numpy() for s, e in spans])


@pytest.mark.parametrize("layer_idx", [-2, 0, 1])
def test_hook_pooling_matches_naive_reference(tiny_student, layer_idx):
    prompt = tiny_student.prompt_for("What is 3 + 4, doubled, minus 5?")
    got = tiny_student.extract([(prompt, steps) for steps in CHAINS], layer_idx=layer_idx, batch_size=3)
    for steps, ex in zip(CHAINS, got, strict=True):
        ref = naive_latents(tiny_student, prompt, steps, layer_idx)
        assert ex.H.dtype == np.float16 and ex.H.shape == (len(steps), 64)
        np.testing.assert_allclose(ex.H.astype(np.float32), ref, atol=1e-3, rtol=1e-2)


def naive_last_token(llm: StudentLLM, prompt: str, steps: list[str], layer_idx: int) -> np.ndarray:
    """Reference for last-token pooling: the layer's state at each step's last token."""
    body, char_spans = render_chain_spans(steps)
    enc = llm.tokenizer(prompt + body, return_offsets_mapping=True)
    spans = token_spans(enc["offset_mapping"], [(len(prompt) + s, len(prompt) + e) for s, e in char_spans])
    with torch.no_grad():
        out = llm.model(torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    h = out.hidden_states[layer_idx % llm.num_layers + 1][0]  # (S, D)
    return np.stack([h[e - 1].float().numpy() for _, e in spans])


@pytest.mark.parametrize("share_prefix", [True, False])
def test_last_and_mean_last_pooling_match_naive_reference(tiny_student, share_prefix):
    items = _mixed_items(tiny_student)
    last = extract_float32(tiny_student, items, layer_idx=1, batch_size=3, share_prefix=share_prefix, pooling="last")
    both = extract_float32(
        tiny_student, items, layer_idx=1, batch_size=3, share_prefix=share_prefix, pooling="mean_last"
    )
    for (prompt, steps), a, b in zip(items, last, both, strict=True):
        ref_last = naive_last_token(tiny_student, prompt, steps, 1)
        ref_mean = naive_latents(tiny_student, prompt, steps, 1)
        np.testing.assert_allclose(a.H, ref_last, atol=1e-4, rtol=1e-3)
        assert b.H.shape == (len(steps), 128)  # mean and last side by side
        np.testing.assert_allclose(b.H[:, :64], ref_mean, atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(b.H[:, 64:], ref_last, atol=1e-4, rtol=1e-3)
        # the question state is one token: its mean and its last token are the same vector
        assert a.q.shape == (64,) and b.q.shape == (128,)
        np.testing.assert_allclose(b.q[:64], a.q, atol=1e-5)
        np.testing.assert_allclose(b.q[64:], a.q, atol=1e-5)
    # multi-token steps: the last token differs from the mean (the two poolings are not the same thing)
    assert not np.allclose(last[0].H, both[0].H[:, :64], atol=1e-3)
    with pytest.raises(ValueError, match="pooling 'max' is not one of"):
        extract_float32(tiny_student, items[:1], pooling="max")


def test_batched_bucketed_equals_one_at_a_time_and_padding_is_neutral(tiny_student):
    items = [("Problem: add.\n", steps) for steps in CHAINS]
    batched = tiny_student.extract(items, batch_size=4)
    for item, ex in zip(items, batched, strict=True):
        alone = tiny_student.extract([item], batch_size=1)[0]
        np.testing.assert_allclose(ex.H.astype(np.float32), alone.H.astype(np.float32), atol=1e-3)
        assert ex.token_ids == alone.token_ids and ex.step_spans == alone.step_spans
    # the shortest chain padded next to a much longer one gives the same latents
    short, long = items[2], ("Problem: add.\n" + "filler words " * 40, CHAINS[0])
    padded = tiny_student.extract([long, short], batch_size=2)[1]
    np.testing.assert_allclose(padded.H.astype(np.float32), batched[2].H.astype(np.float32), atol=1e-3)


def test_layers_after_layer_idx_never_run(tiny_student):
    calls = {"last": 0, "head": 0}
    hooks = [
        tiny_student.layers[-1].register_forward_hook(lambda *a: calls.__setitem__("last", calls["last"] + 1)),
        tiny_student.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1)),
    ]
    try:
        tiny_student.extract([("p: ", ["1 + 1 = 2"])] * 3, layer_idx=-2, batch_size=2)
        assert calls == {"last": 0, "head": 0}
        tiny_student.extract([("p: ", ["1 + 1 = 2"])], layer_idx=-1)
        assert calls == {"last": 1, "head": 0}
    finally:
        for h in hooks:
            h.remove()


def test_token_ids_and_spans_index_the_full_text(tiny_student):
    prompt = tiny_student.prompt_for("2 + 3?")
    ex = tiny_student.extract([ChainInput(prompt, ["2 + 3 = 5", "so 5"], final_answer="5")])[0]
    body, _ = render_chain_spans(["2 + 3 = 5", "so 5"], "5")
    assert ex.token_ids == tiny_student.tokenizer(prompt + body)["input_ids"]
    decoded = [tiny_student.tokenizer.decode(ex.token_ids[s:e]).strip() for s, e in ex.step_spans]
    assert decoded == ["2 + 3 = 5", "so 5"]
    # causal model: the trailing "Answer:" line cannot change the step latents
    without = tiny_student.extract([(prompt, ["2 + 3 = 5", "so 5"])])[0]
    np.testing.assert_allclose(ex.H.astype(np.float32), without.H.astype(np.float32), atol=1e-3)


def test_extract_texts_pools_given_char_spans(tiny_student):
    text = "alpha beta gamma delta"
    spans = [(0, 10), (11, 22)]
    ex = tiny_student.extract_texts([text], [spans])[0]
    assert ex.H.shape == (2, 64)
    assert not np.allclose(ex.H[0], ex.H[1])


def test_errors_are_clear(tiny_student):
    with pytest.raises(ValueError, match=r"use -4\.\.3"):
        tiny_student.extract([("p", ["x"])], layer_idx=4)
    with pytest.raises(ValueError, match="chain 0 has no steps"):
        tiny_student.extract([("p", [])])
    with pytest.raises(ValueError, match="step 2 is empty"):
        tiny_student.extract([("p", ["x", " "])])
    with pytest.raises(ValueError, match="max_length"):
        tiny_student.extract([("word " * 2000, ["x"])])


def test_encoder_latent_source_matches_reference():
    llm = StudentLLM.load("minilm-l6", device="cpu")
    assert (llm.hidden_size, llm.num_layers, llm.spec.kind) == (384, 6, "encoder")
    ex = llm.extract([("Problem: 3 + 4?\n", ["3 + 4 = 7", "7 is the sum"])])[0]
    body, char_spans = render_chain_spans(["3 + 4 = 7", "7 is the sum"])
    text = "Problem: 3 + 4?\n" + body
    enc = llm.tokenizer(text, return_offsets_mapping=True)
    spans = token_spans(
        enc["offset_mapping"], [(len("Problem: 3 + 4?\n") + s, len("Problem: 3 + 4?\n") + e) for s, e in char_spans]
    )
    with torch.no_grad():
        h = llm.model(torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states[-1][0]  # (S, 384)
    ref = np.stack([h[s:e].mean(0).numpy() for s, e in spans])
    np.testing.assert_allclose(ex.H.astype(np.float32), ref, atol=1e-3, rtol=1e-2)
    # bidirectional attention: a prompt's states depend on the chain after it, so sharing must stay off
    items = [("Problem: 3 + 4?\n", steps) for steps in (["3 + 4 = 7", "7 is the sum"], ["4 + 3 = 7"], ["7"])]
    shared = extract_float32(llm, items, share_prefix=True)
    unshared = extract_float32(llm, items, share_prefix=False)
    for a, b in zip(shared, unshared, strict=True):
        np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_allclose(shared[0].H, ref, atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="encoder"):
        llm.generate("hi")


def _mixed_items(llm: StudentLLM) -> list[tuple[str, list[str]]]:
    """Two equal-length prompts with several chains each, a singleton prompt, and a prompt whose
    last token merges with the chain's first ("p: " + "Step" tokenizes as "p:", " Step")."""
    a, b = llm.prompt_for("What is 3 + 4?"), llm.prompt_for("What is 5 + 6?")
    single = llm.prompt_for("Tom has 12 apples and eats 5. How many are left?")
    return [
        (a, CHAINS[0]),
        (b, CHAINS[1]),
        (a, CHAINS[2]),
        (single, CHAINS[3]),
        (b, CHAINS[4]),
        ("p: ", ["1 + 1 = 2"]),
        (a, CHAINS[3]),
        ("p: ", ["2 + 2 = 4", "so 4"]),
        (a, CHAINS[1]),
    ]


def test_prefix_plan_groups_shared_prompts_and_leaves_the_rest(tiny_student):
    items = _mixed_items(tiny_student)
    prompts = [p for p, _ in items]
    tok = tiny_student.tokenizer
    enc = [encode_with_offsets(tok, p + render_chain_spans(steps)[0]) for p, steps in items]
    spans = [
        token_spans(off, [(len(p) + s, len(p) + e) for s, e in render_chain_spans(steps)[1]])
        for (p, steps), (_, off) in zip(items, enc, strict=True)
    ]
    prompt_tokens = {p: encode_with_offsets(tok, p) for p in set(prompts)}
    groups, fallback = plan_prefix_groups(prompts, prompt_tokens, [i for i, _ in enc], [o for _, o in enc], spans)
    assert sorted(g.members for g in groups) == [[0, 2, 6, 8], [1, 4]]
    assert fallback == [3, 5, 7]  # the singleton, and both chains whose first token swallows the prompt's last
    assert len(groups[0].prompt_ids) == len(groups[1].prompt_ids)  # one prompt batch, one continuation bucket
    merged_ids = enc[5][0]
    assert merged_ids[: len(prompt_tokens["p: "][0])] != prompt_tokens["p: "][0]


@pytest.mark.parametrize(("layer_idx", "batch_size"), [(-2, 3), (0, 8), (-1, 1)])
def test_prefix_shared_latents_equal_unshared(tiny_student, layer_idx, batch_size):
    items = _mixed_items(tiny_student)
    shared = extract_float32(tiny_student, items, layer_idx=layer_idx, batch_size=batch_size, share_prefix=True)
    unshared = extract_float32(tiny_student, items, layer_idx=layer_idx, batch_size=batch_size, share_prefix=False)
    for a, b in zip(shared, unshared, strict=True):
        assert a.H.dtype == np.float32 and a.H.shape == b.H.shape
        np.testing.assert_allclose(a.H, b.H, atol=1e-4, rtol=0)
        assert a.token_ids == b.token_ids and a.step_spans == b.step_spans
    halves = tiny_student.extract(items, layer_idx=layer_idx, batch_size=batch_size)
    assert all(h.H.dtype == np.float16 for h in halves)
    np.testing.assert_allclose(halves[0].H.astype(np.float32), shared[0].H, atol=1e-2)


def test_prefix_sharing_runs_each_prompt_once(tiny_student):
    items = _mixed_items(tiny_student)
    seen = []
    handle = tiny_student.layers[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[:2]))
    try:  # batch 1: no padding, so the token counts are exact
        tiny_student.extract(items, batch_size=1, share_prefix=False)
        unshared = sum(b * s for b, s in seen)
        seen.clear()
        tiny_student.extract(items, batch_size=1, share_prefix=True)
        shared = sum(b * s for b, s in seen)
    finally:
        handle.remove()
    prompt_len = len(encode_with_offsets(tiny_student.tokenizer, items[0][0])[0])
    # 6 chains share 2 equal-length prompts, each now run once: 4 prompt passes saved
    assert unshared - shared == 4 * prompt_len


def test_prefix_cache_refuses_sliding_window_layers():
    from transformers import LlamaConfig, MistralConfig

    assert new_cache(LlamaConfig(num_hidden_layers=2), upto=1) is not None
    assert new_cache(LlamaConfig(num_hidden_layers=2), upto=2) is None
    assert new_cache(MistralConfig(num_hidden_layers=2, sliding_window=16), upto=1) is None


def test_question_state_is_the_state_before_the_first_step(tiny_student):
    prompt = tiny_student.prompt_for("What is 3 + 4, doubled, minus 5?")
    got = tiny_student.extract([(prompt, steps) for steps in CHAINS], layer_idx=-2, batch_size=3)
    for steps, ex in zip(CHAINS, got, strict=True):
        body, char_spans = render_chain_spans(steps)
        enc = tiny_student.tokenizer(prompt + body, return_offsets_mapping=True)
        spans = token_spans(enc["offset_mapping"], [(len(prompt) + s, len(prompt) + e) for s, e in char_spans])
        with torch.no_grad():
            h = tiny_student.model(torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states[-2][0]
        assert ex.q is not None and ex.q.dtype == np.float16 and ex.q.shape == (64,)
        # the reference forward's state at the token before the first step's text (layer -2)
        np.testing.assert_allclose(ex.q.astype(np.float32), h[spans[0][0] - 1].numpy(), atol=1e-3, rtol=1e-2)
    # causal: that state has read the prompt and "Step 1:" only, so it depends on the question
    a = tiny_student.extract([(prompt, CHAINS[0])])[0].q
    b = tiny_student.extract([(tiny_student.prompt_for("What is 9 - 2?"), CHAINS[0])])[0].q
    assert np.array_equal(a, got[0].q) and np.abs(a.astype(np.float32) - b).max() > 1e-3


def test_question_state_agrees_with_and_without_prefix_sharing(tiny_student):
    items = _mixed_items(tiny_student)
    shared = extract_float32(tiny_student, items, batch_size=3, share_prefix=True)
    unshared = extract_float32(tiny_student, items, batch_size=3, share_prefix=False)
    for a, b in zip(shared, unshared, strict=True):
        assert a.q is not None and a.q.dtype == np.float32
        np.testing.assert_allclose(a.q, b.q, atol=1e-4, rtol=0)


def test_encoders_give_no_question_state():
    llm = StudentLLM.load("minilm-l6", device="cpu")
    # a bidirectional encoder's state before the steps has seen the steps: it would leak the chain
    assert llm.extract([("Problem: 3 + 4?\n", ["3 + 4 = 7"])])[0].q is None


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_question_span_is_pooled_over_the_questions_own_tokens(tiny_student, share_prefix, pooling):
    """question_pooling="span": the question latent is the step pooling applied to the question's tokens in
    the prompt (its last occurrence: worked examples may repeat it), recomputed here from a plain forward."""
    question = "What is 3 + 4, doubled, minus 5?"
    prompt = f"Example: {question} Step 1: 7\n" + tiny_student.prompt_for(question)
    items = [ChainInput(prompt, steps, question=question) for steps in CHAINS[:3]]
    got = extract_float32(
        tiny_student,
        items,
        layer_idx=1,
        batch_size=2,
        share_prefix=share_prefix,
        pooling=pooling,
        question_pooling="span",
    )
    at = prompt.rfind(question)
    ids, offsets = encode_with_offsets(tiny_student.tokenizer, prompt)
    ((s, e),) = token_spans(offsets, [(at, at + len(question))])
    assert s > 5  # the example's copy of the question comes first and is not the one pooled
    with torch.no_grad():
        h = tiny_student.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0]  # layer 1
    ref = h[s:e].mean(0) if pooling == "mean" else h[e - 1]
    for ex in got:
        np.testing.assert_allclose(ex.q, ref.numpy(), atol=1e-4, rtol=1e-3)
    token = extract_float32(tiny_student, items[:1], layer_idx=1, share_prefix=share_prefix, pooling=pooling)[0].q
    assert np.abs(token - got[0].q).max() > 1e-3  # not the state before the first step


def test_question_span_needs_the_question_and_says_so(tiny_student):
    prompt = tiny_student.prompt_for("What is 3 + 4?")
    with pytest.raises(ValueError, match="needs the chain's question"):
        tiny_student.extract([(str(prompt), ["3 + 4 = 7"])], question_pooling="span")  # a plain string
    # a rendered prompt carries its question: the same latent as naming it
    carried = tiny_student.extract([(prompt, ["3 + 4 = 7"])], question_pooling="span")[0].q
    named = tiny_student.extract([ChainInput(str(prompt), ["3 + 4 = 7"], question="What is 3 + 4?")],
                                 question_pooling="span")[0].q  # fmt: skip
    assert prompt.question == "What is 3 + 4?" and np.array_equal(carried, named)
    with pytest.raises(ValueError, match="does not appear in its prompt"):
        tiny_student.extract([ChainInput(prompt, ["3 + 4 = 7"], question="What is 9 - 2?")], question_pooling="span")
    with pytest.raises(ValueError, match="question_pooling 'both' is not one of"):
        tiny_student.extract([(prompt, ["3 + 4 = 7"])], question_pooling="both")

from __future__ import annotations

import math

import pytest
import torch

from rjepa_core.llm.generation import cut_after_answer
from rjepa_core.segmentation import token_spans


def test_k_chains_per_prompt_with_consistent_fields(tiny_student):
    prompts = [tiny_student.prompt_for("What is 3 + 4?"), "Problem: 12 - 5 =\n"]
    out = tiny_student.generate(prompts, k=3, max_new_tokens=12, seed=0, batch_size=4)
    assert [len(chains) for chains in out] == [3, 3]
    for prompt, chains in zip(prompts, out, strict=True):
        for c in chains:
            assert math.isfinite(c.logprob) and c.logprob <= 0
            assert 1 <= c.num_new_tokens <= 12
            enc = tiny_student.tokenizer(prompt + c.text, return_offsets_mapping=True)
            assert c.token_ids == enc["input_ids"]
            assert len(c.step_spans) == len(c.steps)
            for s, e in c.step_spans:
                assert 0 <= s < e <= len(c.token_ids)
            prompt_len = len(tiny_student.tokenizer(prompt)["input_ids"])
            assert all(s >= prompt_len - 1 for s, _ in c.step_spans)  # steps live in the generated part


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_student):
    prompt = tiny_student.prompt_for("What is 8 + 6?")
    a = tiny_student.generate(prompt, k=4, max_new_tokens=10, seed=7)[0]
    b = tiny_student.generate(prompt, k=4, max_new_tokens=10, seed=7)[0]
    c = tiny_student.generate(prompt, k=4, max_new_tokens=10, seed=8)[0]
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.logprob for x in a] == [x.logprob for x in b]
    assert [x.text for x in a] != [x.text for x in c]
    assert len({x.text for x in a}) > 1  # k samples differ from each other


def test_greedy_is_deterministic_and_batch_independent(tiny_student):
    prompts = [tiny_student.prompt_for("What is 2 + 2?"), "short"]
    g1 = tiny_student.generate(prompts, k=2, temperature=0, max_new_tokens=10, batch_size=4)
    g2 = tiny_student.generate(prompts[:1], k=1, temperature=0, max_new_tokens=10, batch_size=1)
    assert g1[0][0].text == g1[0][1].text == g2[0][0].text  # left padding does not change the result
    assert g1[0][0].logprob == pytest.approx(g2[0][0].logprob, abs=1e-3)


def test_greedy_logprob_is_the_model_probability_of_its_tokens(tiny_student):
    prompt = tiny_student.prompt_for("What is 5 + 5?")
    chain = tiny_student.generate(prompt, k=1, temperature=0, max_new_tokens=8)[0][0]
    prompt_ids = tiny_student.tokenizer(prompt)["input_ids"]
    ids = list(prompt_ids)
    total = 0.0
    with torch.no_grad():
        for _ in range(chain.num_new_tokens):  # naive greedy decoding, one token at a time
            logp = torch.log_softmax(tiny_student.model(torch.tensor([ids])).logits[0, -1], -1)
            nxt = int(logp.argmax())
            total += float(logp[nxt])
            ids.append(nxt)
    assert chain.logprob == pytest.approx(total, abs=1e-3)


def test_logprobs_match_naive_teacher_forcing(tiny_student):
    prompts = ["Problem: 2 + 2\n", tiny_student.prompt_for("What is 3 + 4?")]
    conts = ["Step 1: 2 + 2 = 4\nAnswer: 4", "Step 1: 7"]
    got = tiny_student.logprobs(prompts, conts, batch_size=2)
    for prompt, cont, lp in zip(prompts, conts, got, strict=True):
        enc = tiny_student.tokenizer(prompt + cont, return_offsets_mapping=True)
        ids, first = enc["input_ids"], token_spans(enc["offset_mapping"], [(len(prompt), len(prompt + cont))])[0][0]
        with torch.no_grad():
            logp = torch.log_softmax(tiny_student.model(torch.tensor([ids])).logits[0], -1)
        ref = sum(float(logp[t - 1, ids[t]]) for t in range(first, len(ids)))
        assert lp == pytest.approx(ref, abs=1e-3) and lp < 0
    with pytest.raises(ValueError, match="continuations"):
        tiny_student.logprobs(prompts, conts[:1])


def test_cut_after_answer():
    assert cut_after_answer("Step 1: 3+4=7\nAnswer: 7\nStep 2: junk") == "Step 1: 3+4=7\nAnswer: 7"
    assert cut_after_answer("Step 1: 3+4=7 Answer: 7 then more\nnext") == "Step 1: 3+4=7 Answer: 7 then more"
    assert cut_after_answer("no answer yet\n") == "no answer yet"


def test_bad_arguments(tiny_student):
    with pytest.raises(ValueError, match="k and max_new_tokens"):
        tiny_student.generate("x", k=0)
    with pytest.raises(ValueError, match="temperature"):
        tiny_student.generate("x", temperature=-1)

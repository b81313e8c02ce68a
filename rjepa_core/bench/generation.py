"""Generation benchmark: batched vs one-at-a-time sampling, and the student chains' latents for free.

    >>> result = bench_generation(quick=True)
    >>> result["speedup_batched"], result["extraction_pct_of_sampling"]

1. Throughput: both sides sample the same prompts with the same settings through `StudentLLM.generate`;
   only `batch_size` differs (chains per `model.generate` call, left-padded). Throughput counts the
   generated tokens each side kept, so different samples of different lengths stay comparable.
2. `student_chains` (what the pipeline's sampling step does: batches of 32, 80 new tokens, two worked
   examples in the prompt as `few_shot: 2` versions show them, the registry's layer, pooling and question
   latent): sampling with latents captured while sampling against sampling
   alone, and the teacher-forced extraction of the same chains (`rjepa_core.bench.capture`), side by
   side in one run. `extraction_pct_of_sampling` is the captured path's latent cost as a share of
   sampling time (target ≤ 10 %); `teacher_forced_pct_of_sampling` the second forward it replaces.
3. `capture_agreement`: cosine per step between captured and teacher-forced latents of those chains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rjepa_core.bench.common import few_shot_examples, load_student, sample_statements, timer


def registry_capture(quick: bool):
    """The capture settings of the student under test: the registry entry's for SmolLM2, defaults when quick."""
    from rjepa_core.llm.capture import CaptureSpec

    if quick:
        return CaptureSpec(layer_idx=-2, pooling="mean", question_pooling="span")
    from rjepa_core.llm.registry import DEFAULT_LLM_TAG, load_registry

    spec = load_registry()[DEFAULT_LLM_TAG]
    return CaptureSpec(layer_idx=spec.layer_idx, pooling=spec.pooling, question_pooling=spec.question_pooling)


def bench_generation(
    quick: bool = False,
    n_prompts: int | None = None,
    k: int | None = None,
    max_new_tokens: int | None = None,
    device: str = "auto",
    chains_prompts: int | None = None,
    chains_k: int = 4,
    chains_batch: int = 32,
    chains_new_tokens: int | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    import torch

    from rjepa_core.bench.capture import agreement, sample_pairs, time_capture

    llm, model_name = load_student(quick, device=device)
    if str(llm.device) == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_prompts, k = n_prompts or 2, k or (2 if quick else 4)
    max_new_tokens = max_new_tokens or (16 if quick else 64)
    prompts = [llm.prompt_for(s) for s in sample_statements(n_prompts, seed=1)]
    chains_total = n_prompts * k
    llm.generate(prompts[:1], k=1, max_new_tokens=4, seed=0)  # warm-up
    t: dict[str, float] = {}
    with timer(llm.device, t, "batched"):
        batched = llm.generate(prompts, k=k, max_new_tokens=max_new_tokens, seed=0, batch_size=chains_total)
    with timer(llm.device, t, "single"):
        single = llm.generate(prompts, k=k, max_new_tokens=max_new_tokens, seed=0, batch_size=1)
    tok_b = sum(c.num_new_tokens for row in batched for c in row)
    tok_s = sum(c.num_new_tokens for row in single for c in row)

    spec = registry_capture(quick)
    chains_prompts = chains_prompts or (4 if quick else 16)
    chains_new_tokens = chains_new_tokens or (16 if quick else 80)
    examples = few_shot_examples()
    chain_prompts = [llm.prompt_for(s, examples) for s in sample_statements(chains_prompts, seed=3)]
    timing = time_capture(llm, chain_prompts, chains_k, chains_new_tokens, chains_batch, spec, repeats=repeats)
    pairs = timing.pop("chains")
    dropped = sample_pairs(
        llm,
        chain_prompts,
        chains_k,
        chains_new_tokens,
        chains_batch,
        dataclasses.replace(spec, finish_last=False),
    )
    return {
        "model": model_name,
        "device": str(llm.device),
        "n_prompts": n_prompts,
        "k": k,
        "chains": chains_total,
        "max_new_tokens": max_new_tokens,
        "batched": {
            "seconds": t["batched"],
            "tokens": tok_b,
            "tokens_per_s": tok_b / t["batched"],
            "batch_size": chains_total,
        },
        "single": {"seconds": t["single"], "tokens": tok_s, "tokens_per_s": tok_s / t["single"], "batch_size": 1},
        "speedup_batched": (tok_b / t["batched"]) / (tok_s / t["single"]) if tok_s else None,
        "student_chains": {
            "prompts": chains_prompts,
            "k": chains_k,
            "batch_size": chains_batch,
            "max_new_tokens": chains_new_tokens,
            "few_shot": len(examples),
            "layer_idx": spec.layer_idx,
            "pooling": spec.pooling,
            "question_pooling": spec.question_pooling,
            **timing,
        },
        "extraction_pct_of_sampling": timing["capture_pct_of_sampling"],
        "teacher_forced_pct_of_sampling": timing["teacher_forced_pct_of_sampling"],
        "extraction_target_pct": 10.0,
        "extraction_target_met": timing["capture_pct_of_sampling"] <= 10.0,
        "capture_agreement": agreement(llm, pairs, spec, dropped_pairs=dropped),
    }

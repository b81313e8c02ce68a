"""Generation throughput benchmark: tokens/s of batched sampling against one chain at a time.

    >>> result = bench_generation(quick=True)
    >>> result["speedup_batched"]

Both sides sample the same prompts with the same settings through `StudentLLM.generate`; only
`batch_size` differs (the number of chains per `model.generate` call, left-padded). Throughput counts
the generated tokens each side kept, so different samples of different lengths stay comparable.
"""

from __future__ import annotations

from typing import Any

from rjepa_core.bench.common import load_student, sample_statements, timer


def bench_generation(
    quick: bool = False,
    n_prompts: int | None = None,
    k: int | None = None,
    max_new_tokens: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    import torch

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
    }

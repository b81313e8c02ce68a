"""RERANK overhead benchmark: time to score K=8 candidates against the time to generate them.

    >>> result = bench_scoring(quick=True)
    >>> result["scoring_pct_of_generation"]

One measured pass of what the service's RERANK mode does per request: sample K chains
(`StudentLLM.generate`), extract their step latents (`StudentLLM.extract`) and JEPA-score them
(`JEPAScorer.score`, every step masked in turn). The R-JEPA is untrained (the `small` preset at the
student's width, `tiny` when quick): its speed does not depend on its weights. The overhead of
reranking is extraction + scoring, reported as a percentage of generation time.
"""

from __future__ import annotations

from typing import Any

from rjepa_core.bench.common import load_student, sample_statements, timer


def bench_scoring(
    quick: bool = False,
    n_prompts: int | None = None,
    k: int = 8,
    max_new_tokens: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    import torch

    from rjepa_core.config import ScoreConfig, rjepa_small, rjepa_tiny
    from rjepa_core.jepa.model import RJEPA
    from rjepa_core.jepa.scoring import JEPAScorer

    llm, model_name = load_student(quick, device=device)
    if str(llm.device) == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_prompts = n_prompts or (1 if quick else 2)
    max_new_tokens = max_new_tokens or (24 if quick else 96)
    preset, preset_name = (rjepa_tiny, "tiny") if quick else (rjepa_small, "small")
    torch.manual_seed(0)
    scorer = JEPAScorer(RJEPA(preset(llm.hidden_size)), ScoreConfig(), device=llm.device)
    prompts = [llm.prompt_for(s) for s in sample_statements(n_prompts, seed=2)]
    llm.generate(prompts[:1], k=1, max_new_tokens=4, seed=0)  # warm-up
    t: dict[str, float] = {}
    with timer(llm.device, t, "generation"):
        gen = llm.generate(prompts, k=k, max_new_tokens=max_new_tokens, seed=0, batch_size=k)
    items = [(p, c.steps or [c.text.strip() or "(empty)"]) for p, row in zip(prompts, gen, strict=True) for c in row]
    scorer.score([llm.extract(items[:1])[0].H])  # warm-up of the scorer's kernels
    with timer(llm.device, t, "extraction"):
        latents = [e.H for e in llm.extract(items, batch_size=k)]
    with timer(llm.device, t, "jepa"):
        scorer.score(latents, ["math"] * len(latents))
    n = len(items)
    overhead = t["extraction"] + t["jepa"]
    return {
        "model": model_name,
        "device": str(llm.device),
        "jepa_preset": preset_name,
        "k": k,
        "n_prompts": n_prompts,
        "candidates": n,
        "max_new_tokens": max_new_tokens,
        "generated_tokens": sum(c.num_new_tokens for row in gen for c in row),
        "mean_steps": sum(h.shape[0] for h in latents) / n,
        "generation_s": t["generation"],
        "extraction_s": t["extraction"],
        "jepa_scoring_s": t["jepa"],
        "scoring_ms_per_candidate": 1000.0 * overhead / n,
        "jepa_ms_per_candidate": 1000.0 * t["jepa"] / n,
        "scoring_pct_of_generation": 100.0 * overhead / t["generation"],
        "jepa_only_pct_of_generation": 100.0 * t["jepa"] / t["generation"],
    }

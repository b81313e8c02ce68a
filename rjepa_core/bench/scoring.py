"""RERANK overhead benchmark: time to score K=8 candidates against the time to generate them.

    >>> result = bench_scoring(quick=True)
    >>> result["scoring_pct_of_generation"]

One measured pass of what the service's RERANK mode does per request: sample K chains
(`StudentLLM.generate`; the prompt shows two worked examples, as a `few_shot: 2` checkpoint asks) with
their step latents captured while sampling (the service's path,
`rjepa_serve.engine.candidates_from_samples`), and JEPA-score them (`JEPAScorer.score`, every step
masked in turn). Side by side in the same run: sampling without capture, and the teacher-forced
extraction (`StudentLLM.extract`, the second forward the service ran before). The R-JEPA is untrained
(the `small` preset at the student's width, `tiny` when quick): its speed does not depend on its
weights. The overhead of reranking is the capture's cost (see `rjepa_core.bench.capture`) + scoring,
as a percentage of generation time without capture (target ≤ 2 %); `teacher_forced_*` is the old path.
"""

from __future__ import annotations

from typing import Any

from rjepa_core.bench.common import few_shot_examples, load_student, sample_statements, timer


def bench_scoring(
    quick: bool = False,
    n_prompts: int | None = None,
    k: int = 8,
    max_new_tokens: int | None = None,
    device: str = "auto",
    repeats: int = 3,
) -> dict[str, Any]:
    import torch

    from rjepa_core.bench.capture import time_capture
    from rjepa_core.bench.generation import registry_capture
    from rjepa_core.config import ScoreConfig, rjepa_small, rjepa_tiny
    from rjepa_core.jepa.model import RJEPA
    from rjepa_core.jepa.scoring import JEPAScorer

    llm, model_name = load_student(quick, device=device)
    if str(llm.device) == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    n_prompts = n_prompts or (1 if quick else 2)
    max_new_tokens = max_new_tokens or (24 if quick else 96)
    preset, preset_name = (rjepa_tiny, "tiny") if quick else (rjepa_small, "small")
    spec = registry_capture(quick)
    torch.manual_seed(0)
    scorer = JEPAScorer(RJEPA(preset(llm.hidden_size)), ScoreConfig(), device=llm.device)
    prompts = [llm.prompt_for(s, few_shot_examples()) for s in sample_statements(n_prompts, seed=2)]
    llm.generate(prompts[:1], k=1, max_new_tokens=4, seed=0, capture=spec)  # warm-up
    timing = time_capture(llm, prompts, k, max_new_tokens, k, spec, repeats=repeats)
    pairs = timing.pop("chains")
    latents = [c.latents.H for _, c in pairs if c.latents is not None]
    questions = [c.latents.q for _, c in pairs if c.latents is not None]
    scorer.score(latents[:1], ["math"], questions[:1])  # warm-up of the scorer's kernels
    t: dict[str, float] = {}
    with timer(llm.device, t, "jepa"):
        scorer.score(latents, ["math"] * len(latents), questions)
    n = len(pairs)
    overhead = timing["capture_s"] + t["jepa"]
    old = timing["teacher_forced_extraction_s"] + t["jepa"]
    generation = timing["sampling_s"]
    return {
        "model": model_name,
        "device": str(llm.device),
        "jepa_preset": preset_name,
        "k": k,
        "n_prompts": n_prompts,
        "candidates": n,
        "max_new_tokens": max_new_tokens,
        "few_shot": 2,
        "layer_idx": spec.layer_idx,
        "question_pooling": spec.question_pooling,
        "rerank_latents": "captured while sampling (no second forward)",
        "generated_tokens": timing["generated_tokens"],
        "mean_steps": sum(h.shape[0] for h in latents) / max(len(latents), 1),
        "generation_s": generation,
        "generation_with_capture_s": timing["sampling_with_capture_s"],
        "capture_s": timing["capture_s"],
        "capture_instrumented": timing["capture_instrumented"],
        "capture_wall_overhead_s": timing["capture_wall_overhead_s"],
        **{
            key: timing[key]
            for key in (
                "capture_wall_overhead_best_of_s",
                "capture_wall_pct_of_sampling",
                "capture_cpu_pct_of_sampling",
                "capture_instrumented_pct_of_sampling",
                "sampling_runs_s",
                "sampling_with_capture_runs_s",
                "sampling_cpu_runs_s",
                "sampling_with_capture_cpu_runs_s",
            )
        },
        "same_samples": timing["same_samples"],
        "extraction_s": timing["teacher_forced_extraction_s"],  # the teacher-forced second forward (old path)
        "jepa_scoring_s": t["jepa"],
        "scoring_ms_per_candidate": 1000.0 * overhead / n,
        "jepa_ms_per_candidate": 1000.0 * t["jepa"] / n,
        "scoring_pct_of_generation": 100.0 * overhead / generation,
        "scoring_target_pct": 2.0,
        "scoring_target_met": 100.0 * overhead / generation <= 2.0,
        "teacher_forced_scoring_pct_of_generation": 100.0 * old / generation,
        "jepa_only_pct_of_generation": 100.0 * t["jepa"] / generation,
        "repeats": repeats,
    }

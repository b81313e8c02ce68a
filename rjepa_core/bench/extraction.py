"""Latent extraction benchmark (SPEC §7): the pipeline's `StudentLLM.extract` against the naive loop.

    >>> result = bench_extraction(quick=True)      # tiny model, seconds
    >>> result["speedup_vs_naive"], result["pipeline"]["chains_per_s"]

The naive loop is the seeds' approach, written here as the baseline: one chain at a time, a full
forward with `output_hidden_states=True` (every layer's states kept, the LM head run), and step
boundaries found by re-tokenizing the text up to each step's start and end. Both run on the same
model, chains and machine in one process, alternated `repeats` times, keeping the best time of each
side (other work on a shared machine only ever slows a run down). Their latents are compared (mean
cosine) so the speedup is not bought with different numbers. On a GPU the model FLOP utilisation
is reported too (2 x parameters of the layers that run x tokens; attention's quadratic term left out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rjepa_core.bench.common import load_student, peak_flops, sample_items, timer
from rjepa_core.llm.extraction import adds_special_tokens, resolve_layer
from rjepa_core.segmentation import render_chain


def _num_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=adds_special_tokens(tokenizer, text))["input_ids"])


def naive_extract(llm, items: list[tuple[str, list[str]]], layer_idx: int | None = None) -> list[np.ndarray]:
    """Seed-style extraction: per chain, all hidden states, prefix re-tokenization per step boundary."""
    import torch

    tok = llm.tokenizer
    pos = resolve_layer(llm.spec.layer_idx if layer_idx is None else layer_idx, llm.num_layers)
    out = []
    for prompt, steps in items:
        text = prompt + render_chain(steps)
        enc = tok(text, return_tensors="pt", add_special_tokens=adds_special_tokens(tok, text))
        with torch.no_grad():
            states = llm.model(**{k: v.to(llm.device) for k, v in enc.items()}, output_hidden_states=True).hidden_states
        h = states[pos + 1][0].float()  # (S, D): hidden_states[0] is the embeddings
        rows = []
        for k in range(len(steps)):
            before = prompt + (render_chain(steps[:k]) + "\n" if k else "") + f"Step {k + 1}: "
            start = _num_tokens(tok, before.rstrip(" "))
            end = max(_num_tokens(tok, prompt + render_chain(steps[: k + 1])), start + 1)
            rows.append(h[start:end].mean(dim=0))
        out.append(torch.stack(rows).cpu().numpy().astype(np.float16))  # (J, D)
    return out


def _mean_cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    sims = []
    for x, y in zip(a, b, strict=True):
        x, y = x.astype(np.float32), y.astype(np.float32)
        num = (x * y).sum(axis=1)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-8
        sims.extend((num / den).tolist())
    return float(np.mean(sims))


def _layer_flops_per_token(llm, layers_run: int) -> float:
    per_layer = sum(p.numel() for p in llm.layers[0].parameters())
    return 2.0 * per_layer * layers_run


def _compare(llm, items, repeats: int) -> tuple[dict[str, list[float]], float, int]:
    """Best-of-`repeats` seconds of both sides on the same items, their latents' agreement, token count."""
    tokens = sum(_num_tokens(llm.tokenizer, p + render_chain(s)) for p, s in items)
    runs: dict[str, list[float]] = {"pipeline": [], "naive": []}
    for _ in range(repeats):  # alternate the two sides; keep the best of each (shared machines are noisy)
        t: dict[str, float] = {}
        with timer(llm.device, t, "pipeline"):
            fast = [e.H for e in llm.extract(items)]
        with timer(llm.device, t, "naive"):
            slow = naive_extract(llm, items)
        for key in runs:
            runs[key].append(t[key])
    return runs, _mean_cosine(fast, slow), tokens


def bench_extraction(
    quick: bool = False,
    n_chains: int | None = None,
    repeats: int = 2,
    device: str = "auto",
    per_prompt: int = 4,
) -> dict[str, Any]:
    """Pipeline vs naive on the pipeline's workload (`per_prompt` chains per problem prompt: 4 is v1's
    mean of K samples + gold per problem) and, under `distinct_prompts`, on chains that share no prompt."""
    import torch

    if not str(device).startswith("cuda") and not torch.cuda.is_available():
        torch.set_num_threads(min(2, torch.get_num_threads()))
    llm, model_name = load_student(quick, device=device)
    n = n_chains or (8 if quick else 48)
    items = sample_items(llm, n, seed=0, per_prompt=per_prompt)
    llm.extract(items[:1])  # warm-up: first-call allocations and kernel selection are not the steady state
    naive_extract(llm, items[:1])
    runs, agreement, tokens = _compare(llm, items, repeats)
    d_runs, d_agreement, d_tokens = _compare(llm, sample_items(llm, n, seed=1, per_prompt=1), repeats)
    layers_run = resolve_layer(llm.spec.layer_idx, llm.num_layers) + 1

    def side(seconds: float, tok: int) -> dict[str, float]:
        return {"seconds": seconds, "chains_per_s": n / seconds, "tokens_per_s": tok / seconds}

    t = {key: min(v) for key, v in runs.items()}
    dt = {key: min(v) for key, v in d_runs.items()}
    result = {
        "model": model_name,
        "device": str(llm.device),
        "dtype": str(next(llm.model.parameters()).dtype),
        "n_chains": n,
        "chains_per_prompt": per_prompt,
        "n_tokens": tokens,
        "batch_size": llm.spec.batch_size,
        "layer_idx": llm.spec.layer_idx,
        "pipeline": side(t["pipeline"], tokens),
        "naive": side(t["naive"], tokens),
        "speedup_vs_naive": t["naive"] / t["pipeline"],
        "agreement_mean_cosine": agreement,
        "repeats": repeats,
        **{f"{key}_seconds_all_runs": v for key, v in runs.items()},
        "distinct_prompts": {
            "n_tokens": d_tokens,
            "pipeline": side(dt["pipeline"], d_tokens),
            "naive": side(dt["naive"], d_tokens),
            "speedup_vs_naive": dt["naive"] / dt["pipeline"],
            "agreement_mean_cosine": d_agreement,
        },
    }
    peak = peak_flops(llm.device)
    if peak:
        flops = _layer_flops_per_token(llm, layers_run) * tokens
        result["pipeline"]["mfu"] = flops / t["pipeline"] / peak
        result["naive"]["mfu"] = _layer_flops_per_token(llm, llm.num_layers) * tokens / t["naive"] / peak
        result["peak_flops"] = peak
    return result

"""Latents captured while sampling against the teacher-forced second forward: cost and agreement.

    >>> timing = time_capture(llm, prompts, k=4, max_new_tokens=80, batch_size=32, spec=spec, repeats=2)
    >>> timing["capture_pct_of_sampling"], timing["teacher_forced_pct_of_sampling"]
    >>> agreement(llm, prompts, timing["chains"], spec)["step_cosine"]["mean"]

Both sides sample the same prompts with the same seed (capture does not change what is sampled: the
texts are checked equal), `repeats` pairs, the order swapped every pair (plain first, then capture
first) so that a drift of the machine's speed cancels. The cost of capture is the larger of (a) the
wall-clock difference between sampling with and without it — the median over pairs of the paired
difference (the best-of difference is kept beside it) — and (b) the time measured inside it (the
hook's float16 copies, span mapping and pooling, the extra decode step): (a) alone can come out below
zero from timing noise, (b) alone misses the hook's dispatch. On a shared machine the wall clock
mostly measures the neighbours, so the same paired median is also taken over the process's CPU time
(`capture_cpu_pct_of_sampling`), which other processes disturb far less; `capture_pct_of_sampling`
uses the largest of the three. The teacher-forced cost is `StudentLLM.extract` over the sampled chains
(one hooked layer, prompt shared per problem): the second forward capture replaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rjepa_core.bench.common import timer


def chain_steps(c) -> list[str]:
    """The steps the pipeline stores for a sampled chain (its segments, else its whole text)."""
    return c.steps or [c.text.strip()]


def sample_pairs(llm, prompts, k, max_new_tokens, batch_size, capture=None, stats=None):
    """(prompt, GeneratedChain) of k samples per prompt, seed 0."""
    out = llm.generate(
        prompts, k=k, max_new_tokens=max_new_tokens, seed=0, batch_size=batch_size, capture=capture, capture_stats=stats
    )
    return [(p, c) for p, row in zip(prompts, out, strict=True) for c in row]


def teacher_forced(llm, pairs, spec, batch_size: int | None = None):
    """`StudentLLM.extract` of the sampled chains with the capture's settings: one Extracted per pair."""
    from rjepa_core.llm.extraction import ChainInput

    items = [ChainInput(p, chain_steps(c), question=getattr(p, "question", None)) for p, c in pairs]
    return llm.extract(
        items,
        layer_idx=spec.layer_idx,
        pooling=spec.pooling,
        question_pooling=spec.question_pooling,
        batch_size=batch_size,
    )


def time_capture(llm, prompts, k: int, max_new_tokens: int, batch_size: int, spec, repeats: int = 2) -> dict[str, Any]:
    """Sampling with and without capture side by side, and the teacher-forced extraction of the same chains."""
    from rjepa_core.llm.capture import CaptureStats

    t: dict[str, float] = {}
    times: dict[str, list[float]] = {"plain": [], "capture": []}
    cpu: dict[str, list[float]] = {"plain": [], "capture": []}
    instrumented, pairs, plain_pairs = None, None, None
    for i in range(repeats):
        for side in ("plain", "capture") if i % 2 == 0 else ("capture", "plain"):
            if side == "plain":
                with timer(llm.device, t, "plain"):
                    plain_pairs = sample_pairs(llm, prompts, k, max_new_tokens, batch_size)
            else:
                stats = CaptureStats()
                with timer(llm.device, t, "capture"):
                    pairs = sample_pairs(llm, prompts, k, max_new_tokens, batch_size, spec, stats)
                if not times["capture"] or t["capture"] < min(times["capture"]):
                    instrumented = stats
            times[side].append(t[side])
            cpu[side].append(t[f"{side}_cpu"])
    best = {side: min(v) for side, v in times.items()}
    kept = [(p, c) for p, c in pairs if c.latents is not None]
    with timer(llm.device, t, "teacher_forced"):
        teacher_forced(llm, kept, spec, batch_size=llm.spec.batch_size)
    paired = [c - p for c, p in zip(times["capture"], times["plain"], strict=True)]
    wall = float(np.median(paired))
    cpu_pct = 100.0 * float(np.median([c - p for c, p in zip(cpu["capture"], cpu["plain"], strict=True)]))
    cpu_pct /= float(np.median(cpu["plain"]))
    cost = max(wall, instrumented.seconds, cpu_pct / 100.0 * best["plain"])
    return {
        "chains": pairs,
        "n_chains": len(pairs),
        "n_captured": len(kept),
        "same_samples": [c.text for _, c in plain_pairs] == [c.text for _, c in pairs],
        "generated_tokens": sum(c.num_new_tokens for _, c in pairs),
        "sampling_s": best["plain"],
        "sampling_with_capture_s": best["capture"],
        "capture_wall_overhead_s": wall,  # median paired difference
        "capture_wall_overhead_best_of_s": best["capture"] - best["plain"],
        "sampling_runs_s": times["plain"],
        "sampling_with_capture_runs_s": times["capture"],
        "sampling_cpu_runs_s": cpu["plain"],
        "sampling_with_capture_cpu_runs_s": cpu["capture"],
        "capture_wall_pct_of_sampling": 100.0 * wall / best["plain"],
        "capture_cpu_pct_of_sampling": cpu_pct,
        "capture_instrumented_pct_of_sampling": 100.0 * instrumented.seconds / best["plain"],
        "capture_instrumented": instrumented.to_dict(),
        "capture_s": cost,
        "teacher_forced_extraction_s": t["teacher_forced"],
        "capture_pct_of_sampling": 100.0 * cost / best["plain"],
        "teacher_forced_pct_of_sampling": 100.0 * t["teacher_forced"] / best["plain"],
        "repeats": repeats,
    }


def _cos(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def _summary(x: list[float]) -> dict[str, Any]:
    if not x:
        return {"n": 0}
    v = np.asarray(x, dtype=np.float64)
    return {"n": len(x), "mean": float(v.mean()), "min": float(v.min()), "p05": float(np.quantile(v, 0.05))}


def agreement(llm, pairs, spec, dropped_pairs=None) -> dict[str, Any]:
    """Cosine per step (and of the question latent) between captured and teacher-forced latents.

    Steps are split by whether the teacher-forced text (prompt + canonical "Step k: ..." rendering,
    re-tokenized) has the very tokens the student wrote up to the end of that step (`same_tokens`): there
    the two are one computation up to float16; elsewhere the student wrote another text around the step
    (a blank line, "1." instead of "Step 1:", ...) or the tokenizer splits it differently.
    dropped_pairs: the same chains captured with `finish_last=False`; compared on the chains whose last
    step ends on the never-fed last token.
    """
    kept = [(p, c) for p, c in pairs if c.latents is not None]
    forced = teacher_forced(llm, kept, spec, batch_size=llm.spec.batch_size)
    steps: dict[str, list[float]] = {"all": [], "same_tokens": [], "other": []}
    questions: list[float] = []
    chain_min: list[float] = []
    for (_, c), tf in zip(kept, forced, strict=True):
        cap = c.latents
        cos = _cos(cap.H, tf.H).tolist()
        chain_min.append(min(cos))
        steps["all"] += cos
        for j, x in enumerate(cos):
            same = tf.token_ids[: tf.step_spans[j][1]] == cap.token_ids[: cap.step_spans[j][1]]
            steps["same_tokens" if same else "other"].append(x)
        if cap.q is not None and tf.q is not None:
            questions += _cos(cap.q, tf.q).tolist()
    out = {
        "n_chains": len(kept),
        "n_steps": len(steps["all"]),
        "step_cosine": _summary(steps["all"]),
        "chain_min_step_cosine": _summary(chain_min),
        "question_cosine": _summary(questions),
        "same_tokens_step_cosine": _summary(steps["same_tokens"]),
        "other_step_cosine": _summary(steps["other"]),
        "layer_idx": spec.layer_idx,
        "pooling": spec.pooling,
        "question_pooling": spec.question_pooling,
    }
    if dropped_pairs is not None:
        out["last_token"] = _last_token(kept, forced, dropped_pairs)
    return out


def _last_token(kept, forced, dropped_pairs) -> dict[str, Any]:
    """On the chains whose last step needs the never-fed last token: cosine of that step with the extra
    decode step (finish_last=True) and without it (pooled over the step's other tokens)."""
    with_step, without = [], []
    by_text = {(p, d.text): d for p, d in dropped_pairs}
    for (p, c), tf in zip(kept, forced, strict=True):
        d = by_text.get((p, c.text))
        if d is None or d.latents is None or c.latents is None:
            continue
        if c.latents.step_spans[-1] == d.latents.step_spans[-1]:
            continue  # the last step did not need the last token
        with_step.append(float(_cos(c.latents.H[-1], tf.H[-1])[0]))
        without.append(float(_cos(d.latents.H[-1], tf.H[-1])[0]))
    return {"chains": len(with_step), "with_extra_step": _summary(with_step), "without": _summary(without)}

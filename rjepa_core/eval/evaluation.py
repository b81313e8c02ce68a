"""The evaluation report (SPEC F15): every selection method on the same K candidates of the test split.

    >>> report = evaluate(problems, chains, latents, scorer, train_chains=train, train_latents=train_H,
    ...                   ks=(4, 8), llm_tag="smollm2-135m", dataset_version="v1")
    >>> report["methods"]["jepa"]["k=8"]["accuracy"], report["auroc_jepa"], report["rerank_minus_majority"]
    >>> paths = write_report(report, "reports/smollm2-135m/v1")      # report.json, report.md, *.png

`chains` are the student's sampled candidates on the test problems, ordered by meta["sample_index"];
the first k of each problem are the candidates at K = k. Chains flagged meta["greedy"] are the
greedy decodes and are used as the "greedy" method (as is the `greedy` mapping); without any, greedy
is the first sample and the report says so. Correctness is the chain's `is_valid` label.

Latencies are the time each method spends scoring candidates (ms per candidate) once latents exist:
the shared cost of extracting latents is measured by the `scoring` benchmark instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from rjepa_core.eval.localisation import (
    MIN_FIT_CHAINS,
    first_above_pick,
    first_error_localisation,
    first_wrong_step_of,
    fit_localisation_threshold,
)
from rjepa_core.eval.metrics import (
    N_RESAMPLES,
    accuracy,
    auroc,
    bootstrap_ci,
    mean_within_group_auroc,
    oracle_pass_at_k,
    paired_difference,
)
from rjepa_core.eval.selection import (
    SCORED_METHODS,
    VOTES,
    EvalCandidate,
    Weights,
    candidate_scores,
    choose,
    fit_tau,
    fit_weights,
    random_correctness,
)
from rjepa_core.eval.verifier import LatentClassifier
from rjepa_core.inference.vote import DEFAULT_TAU_REL, relative_tau
from rjepa_core.jepa.normalisation import SurpriseNorm
from rjepa_core.schemas import ChainOfThought, Problem

RANDOM_DRAWS = 200  # seeded draws averaged for the random baseline
MAX_HISTORY_ROWS = 600  # training-curve rows kept in the report (validation rows are always kept)


def _ordered_candidates(chains: Sequence[ChainOfThought]) -> tuple[dict[str, list[ChainOfThought]], dict]:
    """Sampled chains per problem in sample order, and the greedy chains found among them."""
    groups: dict[str, list[tuple[int, int, ChainOfThought]]] = {}
    greedy: dict[str, ChainOfThought] = {}
    for n, c in enumerate(chains):
        if c.meta.get("greedy"):
            greedy.setdefault(c.problem_id, c)
            continue
        groups.setdefault(c.problem_id, []).append((int(c.meta.get("sample_index", n)), n, c))
    return {pid: [c for *_, c in sorted(g, key=lambda t: t[:2])] for pid, g in groups.items()}, greedy


def _num_tokens(c: ChainOfThought) -> int:
    n = c.meta.get("num_new_tokens")
    if n:
        return int(n)
    return max(len(str(c.meta.get("text") or " ".join(c.steps)).split()), 1)


def _to_candidate(c: ChainOfThought) -> EvalCandidate:
    return EvalCandidate(
        cot_id=c.cot_id,
        answer=c.final_answer,
        correct=bool(c.is_valid),
        logprob=c.logprob,
        num_tokens=_num_tokens(c),
        num_steps=len(c.steps),
        text=str(c.meta.get("text") or "\n".join(c.steps)),
        problem_id=c.problem_id,
        first_wrong_step=None if c.is_valid else first_wrong_step_of(c.steps, c.meta),
    )


def _latents_of(chains: Sequence[ChainOfThought], latents: dict[str, np.ndarray], what: str) -> list[np.ndarray]:
    missing = [c.cot_id for c in chains if c.cot_id not in latents]
    if missing:
        raise ValueError(
            f"{len(missing)} {what} chains have no latents (e.g. cot_id {missing[0]}): materialize the latents "
            "of these chains for this LLM first"
        )
    return [np.asarray(latents[c.cot_id]) for c in chains]


def _jepa_score(
    scorer, seqs: list[np.ndarray], domains: list[str], questions: list[np.ndarray | None] | None = None
) -> tuple[list, float]:
    """ChainScores and the scoring time in ms per chain."""
    tic = time.perf_counter()
    scores = scorer.score(seqs, domains, questions)
    ms = (time.perf_counter() - tic) * 1000.0 / max(len(seqs), 1)
    return scores, ms


def _coerce_weights(weights: Any) -> Weights:
    if isinstance(weights, Weights):
        return weights
    if isinstance(weights, dict):
        return Weights(**{k: float(v) for k, v in weights.items() if k in ("alpha", "beta", "gamma")})
    return Weights(float(weights.alpha), float(weights.beta), float(weights.gamma))


def _heldout_groups(
    scorer,
    train_chains: Sequence[ChainOfThought],
    train_latents: dict[str, np.ndarray],
    domain_of,
    kmax: int,
    questions: dict[str, np.ndarray],
) -> tuple[list[list[EvalCandidate]], str]:
    """JEPA-scored candidate groups of the validation split (else the train split), for fitting selection."""
    by_split: dict[str, dict[str, list[ChainOfThought]]] = {"val": {}, "train": {}}
    groups, _ = _ordered_candidates([c for c in train_chains if c.cot_id in train_latents])
    for pid, g in groups.items():
        split = "val" if any(c.meta.get("split") == "val" for c in g) else "train"
        if len(g) >= 2:
            by_split[split][pid] = g[:kmax]
    split = "val" if by_split["val"] else "train"
    chosen = by_split[split]
    if not chosen:
        return [], split
    flat = [c for g in chosen.values() for c in g]
    scores, _ = _jepa_score(
        scorer,
        _latents_of(flat, train_latents, split),
        [domain_of(c) for c in flat],
        [questions.get(c.cot_id) for c in flat],
    )
    cands = iter(_to_candidate(c) for c in flat)
    loss = iter(scores)
    fit_groups = []
    for g in chosen.values():
        row = [next(cands) for _ in g]
        for cand in row:
            sc = next(loss)
            cand.jepa_loss = sc.jepa_loss
            cand.step_surprise = [float(x) for x in sc.step_surprise]
        fit_groups.append(row)
    return fit_groups, split


def _loss_scale(scorer, groups: Sequence[Sequence[EvalCandidate]]) -> float | None:
    """Spread of lawful chains' JEPA-losses: the calibration's std, else the std over the held-out candidates."""
    cal = getattr(scorer, "calibration", None)
    if cal is not None and cal.std > 0:
        return float(cal.std)
    losses = [c.jepa_loss for g in groups for c in g if c.jepa_loss is not None]
    return float(np.std(losses)) if len(losses) > 1 else None


def _fit_vote_and_norm(scorer, held: Sequence[Sequence[EvalCandidate]], where: str) -> dict[str, Any]:
    """The JEPA vote's tau_rel and the surprise normaliser from held-out candidate groups (no test data)."""
    out: dict[str, Any] = {}
    if held:
        t, acc, grid = fit_tau(held, _loss_scale(scorer, held))
        out["jepa_vote"] = {"tau_rel": t, "source": f"fitted on {where} (accuracy {acc:.3f} there)", "grid": grid}
    reference = [c.step_surprise for g in held for c in g if c.step_surprise]
    if reference:  # label-free: surprise statistics of the held-out candidates
        norm = out["surprise_norm"] = SurpriseNorm.fit(reference)
        out["surprise_norm_source"] = f"{len(reference)} candidates of {where}"
        out["localisation"] = _fit_first_above(norm, held, where)
    return out


def _fit_first_above(norm: SurpriseNorm, held: Sequence[Sequence[EvalCandidate]], where: str) -> dict[str, Any]:
    """The first_above threshold, by hit rate on the held-out wrong chains' labelled first wrong step."""
    wrong = [c for g in held for c in g if not c.correct and c.step_surprise and len(c.step_surprise) == c.num_steps]
    fit = fit_localisation_threshold([norm.z(c.step_surprise) for c in wrong], [c.first_wrong_step for c in wrong])
    if fit["fitted"]:
        how = f"fitted on {fit['n']} wrong chains of {where}"
    else:
        held_out = where or "no held-out split"
        how = f"default (only {fit['n']} labelled wrong chains of {held_out}; {MIN_FIT_CHAINS} needed to fit)"
    return {**fit, "rule": "first_above", "source": how}


def fit_selection(
    scorer,
    problems: Sequence[Problem],
    chains: Sequence[ChainOfThought],
    latents: dict[str, np.ndarray],
    *,
    kmax: int = 8,
    questions: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Inference settings a checkpoint carries, fitted on the validation split's sampled candidates
    (the train split's when there is no validation group): the JEPA vote's tau_rel (by accuracy) and
    the position-normalised surprise (label-free). Returns meta entries: {"jepa_vote": {...},
    "surprise_norm": {...}}; empty when no problem has two candidates with latents.
    """
    by_id = {p.problem_id: p for p in problems}
    split = {p.problem_id: p.split for p in problems}
    held_out = [c for c in chains if split.get(c.problem_id) in ("train", "val") and not c.meta.get("greedy")]

    def domain_of(c: ChainOfThought) -> str:
        return by_id[c.problem_id].domain if c.problem_id in by_id else "other"

    held, held_split = _heldout_groups(scorer, held_out, latents, domain_of, kmax, questions or {})
    fitted = _fit_vote_and_norm(scorer, held, f"{len(held)} {held_split}-split problems")
    out: dict[str, Any] = {}
    if "jepa_vote" in fitted:
        out["jepa_vote"] = {k: v for k, v in fitted["jepa_vote"].items() if k != "grid"}
    if "surprise_norm" in fitted:
        out["surprise_norm"] = {**fitted["surprise_norm"].to_dict(), "source": fitted["surprise_norm_source"]}
    if "localisation" in fitted:
        out["localisation"] = {k: v for k, v in fitted["localisation"].items() if k != "grid"}
    return out


def _train_classifiers(
    train_chains: Sequence[ChainOfThought] | None, train_latents: dict[str, np.ndarray] | None, seed: int
) -> tuple[dict[str, LatentClassifier], dict[str, str]]:
    models, skipped = {}, {}
    usable = [c for c in (train_chains or []) if train_latents and c.cot_id in train_latents]
    for kind in ("verifier", "probe"):
        if not usable:
            skipped[kind] = "no training chains with latents were given"
            continue
        try:
            from rjepa_core.eval.verifier import ClassifierConfig

            models[kind] = LatentClassifier(kind, ClassifierConfig(seed=seed)).fit(
                [train_latents[c.cot_id] for c in usable], [c.is_valid for c in usable]
            )
        except ValueError as exc:
            skipped[kind] = str(exc)
    return models, skipped


def _history_rows(history: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not history:
        return None
    train_rows = [r for r in history if r.get("kind") == "train"]
    stride = max(1, len(train_rows) // MAX_HISTORY_ROWS)
    keep = {id(r) for r in train_rows[::stride]}
    return [
        {k: v for k, v in r.items() if isinstance(v, int | float | str)}
        for r in history
        if r.get("kind") != "train" or id(r) in keep
    ]


def evaluate(
    problems: list[Problem],
    chains: list[ChainOfThought],
    latents: dict[str, np.ndarray],
    scorer,
    *,
    train_chains: list[ChainOfThought] | None = None,
    train_latents: dict[str, np.ndarray] | None = None,
    ks: Sequence[int] = (4, 8),
    weights: Any = None,
    seed: int = 0,
    llm_tag: str = "",
    dataset_version: str = "",
    greedy: dict[str, ChainOfThought] | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    n_resamples: int = N_RESAMPLES,
    questions: dict[str, np.ndarray] | None = None,
    tau_rel: float | None = None,
    tau_source: str = "given",
) -> dict[str, Any]:
    """Compare every selection method on the same candidates; returns the report dict (see module doc).

    questions: cot_id -> question latent (LatentSequence.Q), for checkpoints with a question token.
    tau_rel: the JEPA vote's relative temperature; fitted on the validation candidates when None.
    """
    questions = questions or {}
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    kmax = ks[-1]
    by_id = {p.problem_id: p for p in problems}
    groups, found_greedy = _ordered_candidates(chains)
    groups = {pid: g for pid, g in groups.items() if pid in by_id and len(g) >= ks[0]}
    if not groups:
        raise ValueError(
            f"no test problem has >= {ks[0]} sampled candidates: sample at least max(ks)={kmax} chains per test "
            "problem (student_chains k_test)"
        )
    pids = sorted(groups)
    most = max(len(g) for g in groups.values())
    ks_skipped = [k for k in ks if k > most]  # no problem has that many candidates: nothing to measure at k
    ks = [k for k in ks if k <= most]
    kmax = ks[-1]
    greedy_map = {**found_greedy, **(greedy or {})}
    n_greedy = sum(p in greedy_map for p in pids)
    greedy_source = "greedy_decoding" if n_greedy == len(pids) else ("mixed" if n_greedy else "first_sample")

    def domain_of(c: ChainOfThought) -> str:
        return by_id[c.problem_id].domain if c.problem_id in by_id else "other"

    # 1. score the kmax-candidate pool of every problem once: JEPA, verifier, probe
    pool = {pid: groups[pid][:kmax] for pid in pids}
    flat = [c for pid in pids for c in pool[pid]]
    cand = {c.cot_id: _to_candidate(c) for c in flat}
    seqs = _latents_of(flat, latents, "test")
    latency: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if scorer is not None:
        scores, latency["jepa"] = _jepa_score(
            scorer, seqs, [domain_of(c) for c in flat], [questions.get(c.cot_id) for c in flat]
        )
        for c, s in zip(flat, scores, strict=True):
            cand[c.cot_id].jepa_loss = float(s.jepa_loss)
            cand[c.cot_id].step_surprise = [float(x) for x in s.step_surprise]
    else:
        for m in ("jepa", "composite", *VOTES):
            skipped[m] = "no JEPA scorer was given"
    models, why = _train_classifiers(train_chains, train_latents, seed)
    skipped.update(why)
    for kind, model in models.items():
        tic = time.perf_counter()
        probs = model.predict_proba(seqs)
        latency[kind] = (time.perf_counter() - tic) * 1000.0 / len(seqs)
        for c, p in zip(flat, probs, strict=True):
            setattr(cand[c.cot_id], kind, float(p))

    # 2. composite weights and the JEPA vote's temperature: given, or fitted on held-out (validation) candidates
    w, weights_source = None, ""
    vote: dict[str, Any] = {}
    tau: float | None = None
    held: list[list[EvalCandidate]] = []
    held_split = ""
    if scorer is not None:
        if train_chains and train_latents:
            held, held_split = _heldout_groups(scorer, train_chains, train_latents, domain_of, kmax, questions)
        where = f"{len(held)} {held_split}-split problems" if held else ""
        if weights is not None:
            w, weights_source = _coerce_weights(weights), "given"
        elif held:
            w, acc = fit_weights(held)
            weights_source = f"fitted on {where} (rerank accuracy {acc:.3f} there)"
        if w is None:
            w = Weights()
            weights_source = f"default ({'no held-out candidate groups to fit on'})"
        scale = _loss_scale(scorer, held)
        fitted = _fit_vote_and_norm(scorer, held, where) if held else {}
        if tau_rel is not None:
            vote = {"tau_rel": float(tau_rel), "source": tau_source}
        elif "jepa_vote" in fitted:
            vote = fitted["jepa_vote"]
        else:
            vote = {"tau_rel": DEFAULT_TAU_REL, "source": "default (no held-out candidate groups to fit on)"}
        tau = relative_tau(vote["tau_rel"], scale)
        vote.update(tau=tau, loss_scale=scale)
        # the excess-surprise filter reads position-normalised surprise: the checkpoint's normaliser, else val's
        step_norm = getattr(scorer, "surprise_norm", None) or fitted.get("surprise_norm")
        if step_norm is None:
            skipped["jepa_excess_filter_majority"] = "no surprise normaliser (checkpoint meta or validation fit)"
        else:
            for c in flat:
                cand[c.cot_id].step_z = step_norm.z(cand[c.cot_id].step_surprise)

    methods_run = [m for m in SCORED_METHODS if m not in skipped]
    results: dict[str, dict[str, Any]] = {m: {} for m in ("greedy", "random", *methods_run)}
    headline: dict[str, Any] = {"rerank_minus_majority": {}, "rerank_minus_majority_ci95": {}, "oracle": {}}
    headline["rerank_minus_greedy"] = {}
    paired: dict[str, dict[str, Any]] = {}  # method -> k -> paired difference with majority vote
    n_problems: dict[str, int] = {}
    for k in ks:
        key = f"k={k}"
        kp = [pid for pid in pids if len(groups[pid]) >= k]
        n_problems[key] = len(kp)
        gk = [[cand[c.cot_id] for c in groups[pid][:k]] for pid in kp]
        labels = [[c.correct for c in g] for g in gk]
        oracle = oracle_pass_at_k(labels, k)
        headline["oracle"][key] = oracle
        per_problem: dict[str, np.ndarray] = {}
        greedy_ok = [
            bool(greedy_map[pid].is_valid) if pid in greedy_map else bool(groups[pid][0].is_valid) for pid in kp
        ]
        per_problem["greedy"] = np.asarray(greedy_ok, dtype=np.float64)
        per_problem["random"] = random_correctness(gk, RANDOM_DRAWS, seed)
        for name in ("greedy", "random"):
            results[name][key] = {"auroc": None, "auroc_within_problem": None, "latency_ms_per_candidate": 0.0}
        for m in methods_run:
            tic = time.perf_counter()
            mscores = [candidate_scores(m, g, w, tau) for g in gk]
            picks = [choose(m, g, w, tau) for g in gk]
            select_ms = (time.perf_counter() - tic) * 1000.0 / max(sum(len(g) for g in gk), 1)
            model_ms = latency.get("jepa", 0.0) if m == "composite" else latency.get(m, 0.0)
            per_problem[m] = np.asarray([g[i].correct for g, i in zip(gk, picks, strict=True)], dtype=np.float64)
            flat_scores = np.concatenate(mscores)
            flat_labels = [y for row in labels for y in row]
            results[m][key] = {
                "auroc": auroc(flat_scores, flat_labels),
                "auroc_within_problem": mean_within_group_auroc(mscores, labels),
                "latency_ms_per_candidate": model_ms + select_ms,
            }
        for name, vals in per_problem.items():
            results[name][key].update(
                accuracy=accuracy(vals), ci95=bootstrap_ci(vals, n_resamples, seed), oracle_pass_at_k=oracle, k=k
            )
        if "jepa" in per_problem:
            diff = paired_difference(per_problem["jepa"], per_problem["majority"], n_resamples, seed)
            headline["rerank_minus_majority"][key] = diff["mean"]
            headline["rerank_minus_majority_ci95"][key] = diff["ci95"]
            headline["rerank_minus_greedy"][key] = accuracy(per_problem["jepa"] - per_problem["greedy"])
        for m in per_problem:
            if m != "majority" and "majority" in per_problem and m not in ("greedy", "random"):
                d = paired_difference(per_problem[m], per_problem["majority"], n_resamples, seed)
                paired.setdefault(m, {})[key] = {"diff": d["mean"], "ci95": d["ci95"]}

    # per task family (problem source) at the largest K: where each method helps, where the student can't
    by_source: dict[str, dict[str, Any]] = {}
    sources = [by_id[pid].source for pid in kp]
    for name in sorted(set(sources)):
        rows_i = [i for i, src in enumerate(sources) if src == name]
        by_source[name] = {
            "n_problems": len(rows_i),
            "oracle_pass_at_k": float(np.mean([any(labels[i]) for i in rows_i])),
            "accuracy": {m: float(per_problem[m][rows_i].mean()) for m in per_problem},
        }

    # 3. JEPA-loss separation and first-error localisation on the whole kmax pool
    pool_c = [cand[c.cot_id] for c in flat]
    report_jepa: dict[str, Any] = {"auroc_jepa": None, "auroc_jepa_within_problem": None}
    localisation: dict[str, Any] = {"n": 0}
    if scorer is not None:
        y = [c.correct for c in pool_c]
        report_jepa["auroc_jepa"] = auroc([-c.jepa_loss for c in pool_c], y)
        report_jepa["auroc_jepa_within_problem"] = mean_within_group_auroc(
            [[-cand[c.cot_id].jepa_loss for c in pool[pid]] for pid in pids],
            [[c.is_valid for c in pool[pid]] for pid in pids],
        )
        values = {
            "correct": [round(c.jepa_loss, 6) for c in pool_c if c.correct],
            "incorrect": [round(c.jepa_loss, 6) for c in pool_c if not c.correct],
        }
        report_jepa["jepa_loss_values"] = values
        report_jepa["jepa_loss_by_correctness"] = {k: (float(np.mean(v)) if v else None) for k, v in values.items()} | {
            f"n_{k}": len(v) for k, v in values.items()
        }
        wrong = [(c, cand[c.cot_id]) for c in flat if not c.is_valid]
        # a step label only means something when the latents have one row per labelled step
        labelled = [
            (e.step_surprise, first_wrong_step_of(c.steps, c.meta))
            for c, e in wrong
            if e.step_surprise is not None and len(e.step_surprise) == len(c.steps)
        ]
        localisation = first_error_localisation([s for s, _ in labelled], [w for _, w in labelled], seed)
        localisation["n_incorrect"] = len(wrong)
        localisation["three_plus_steps"] = first_error_localisation(
            [s for s, _ in labelled], [w for _, w in labelled], seed, min_steps=3
        )
        norm, norm_source = getattr(scorer, "surprise_norm", None), "the checkpoint's meta"
        if norm is None and "surprise_norm" in fitted:
            norm, norm_source = fitted["surprise_norm"], fitted["surprise_norm_source"]
        if norm is not None and labelled:
            z = [norm.z(s) for s, _ in labelled]
            localisation["position_normalised"] = first_error_localisation(z, [w for _, w in labelled], seed)
            localisation["position_normalised"]["three_plus_steps"] = first_error_localisation(
                z, [w for _, w in labelled], seed, min_steps=3
            )
            localisation["position_normalised"]["fitted_on"] = norm_source
            # the service's localiser: the first step above the threshold (fitted with the norm it goes with)
            if norm_source == "the checkpoint's meta" and getattr(scorer, "localisation_source", None):
                threshold, t_source = (
                    scorer.localisation_threshold,
                    f"the checkpoint's meta ({scorer.localisation_source})",
                )
            else:  # a checkpoint from before the threshold was fitted, or a norm fitted here
                fit = _fit_first_above(norm, held, where)
                threshold, t_source = fit["threshold"], fit["source"]
            pick = first_above_pick(threshold)
            first = first_error_localisation(z, [w for _, w in labelled], seed, pick=pick)
            first["three_plus_steps"] = first_error_localisation(
                z, [w for _, w in labelled], seed, min_steps=3, pick=pick
            )
            localisation["first_above"] = {**first, "threshold": threshold, "threshold_source": t_source}

    report: dict[str, Any] = {
        "k": kmax,
        "ks": ks,
        "ks_skipped": ks_skipped,
        "n_problems": len(pids),
        "n_problems_per_k": n_problems,
        "n_candidates": len(flat),
        "llm_tag": llm_tag,
        "dataset_version": dataset_version,
        "seed": seed,
        "created_at": datetime.now(UTC).isoformat(),
        "greedy_source": greedy_source,
        "correct_rate": accuracy([c.correct for c in pool_c]),
        "methods": results,
        "skipped_methods": skipped,
        "composite_weights": w.as_dict() if w is not None else None,
        "composite_weights_source": weights_source,
        "jepa_vote": vote or None,
        "paired_vs_majority": paired,
        "classifiers": {k: {"num_train": m.num_train} for k, m in models.items()},
        "localisation": localisation,
        "by_source": by_source,
        **headline,
        **report_jepa,
        "notes": [
            "accuracy: per-problem correctness of the chosen chain; ci95: percentile bootstrap over problems "
            f"({n_resamples} resamples, seed {seed})",
            "auroc: the method's candidate score against chain correctness over all candidates of the K pool",
            "latency_ms_per_candidate: scoring time once latents exist (latent extraction excluded)",
            f"greedy: the greedy-decoded chain where available, else the first sample ({greedy_source})",
            f"random: mean over {RANDOM_DRAWS} seeded uniform draws",
        ],
    }
    rows = _history_rows(history)
    if rows:
        report["history"] = rows
    return report

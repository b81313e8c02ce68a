"""Ablations (SPEC F15): train one R-JEPA per config variant, measure it on the validation candidates.

    >>> rows = run_ablations(train_seqs, val_seqs, val_chains, val_latents, variants=[
    ...     {"name": "baseline"},
    ...     {"name": "mask=random", "mask": {"kind": "random"}},
    ...     {"name": "small", "preset": "small"},
    ...     {"name": "layer -4", "layer_idx": -4},            # needs layers={-4: LayerData(...)}
    ... ], out_dir="/tmp/ablations", base_config=cfg)
    >>> [(r["name"], r["auroc"], r["rerank_accuracy"]) for r in rows]

A variant is a dict of config section overrides (`mask`, `loss`, `optim`, `train`, `score`, `model`)
plus optional `name`, `preset` (tiny | small | base | large: rebuilds the model section at the
latents' width) and `layer_idx` (the student layer the latents come from: those latents are taken
from `layers[layer_idx]`, extracted beforehand) and `pooling` (mean | last | mean_last: taken from
`layers[(layer_idx or None, pooling)]`). Every variant is measured on the same validation
candidates: AUROC of -JEPA-loss for chain correctness and the accuracy of min-JEPA-loss reranking
at K = k, next to majority vote and oracle pass@K on the same groups. A variant that fails (bad
config, no valid chains) gets a row with its `error` instead of stopping the sweep.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rjepa_core.eval.evaluation import _ordered_candidates, _to_candidate
from rjepa_core.eval.metrics import accuracy, auroc, mean_within_group_auroc, oracle_pass_at_k
from rjepa_core.eval.selection import choose, cross_validated_selection
from rjepa_core.jepa.labels import training_labels
from rjepa_core.schemas import ChainOfThought, distinct_chains

SECTIONS = ("model", "mask", "loss", "optim", "train", "score")


@dataclass
class LayerData:
    train_seqs: Sequence[Any]  # training chains (LatentSequence / Chain) with latents of this layer
    val_seqs: Sequence[Any]  # validation chains for early stopping, same layer
    candidate_latents: dict[str, np.ndarray]  # cot_id -> H of the validation candidates, same layer
    candidate_questions: dict[str, np.ndarray] | None = None  # cot_id -> question latent Q, same layer


def _width(seqs: Sequence[Any]) -> int:
    from rjepa_core.jepa.collate import as_chain

    if not seqs:
        raise ValueError("ablations need training chains with latents")
    return int(as_chain(seqs[0]).H.shape[1])


def extraction_key(variant: dict[str, Any]) -> int | tuple | None:
    """Which extra latents a variant needs: its `layer_idx` (int), (layer_idx or None, pooling) when it
    sets `pooling`, (layer_idx or None, pooling or None, question_pooling) when it sets `question_pooling`,
    or None when it uses the partition's own latents."""
    layer, pooling = variant.get("layer_idx"), variant.get("pooling")
    question = variant.get("question_pooling")
    if question is not None:
        from rjepa_core.llm.registry import QUESTION_POOLINGS

        if question not in QUESTION_POOLINGS:
            raise ValueError(f"variant question_pooling {question!r} is not one of {QUESTION_POOLINGS}")
        return (None if layer is None else int(layer), None if pooling is None else str(pooling), str(question))
    if pooling is not None:
        from rjepa_core.llm.registry import POOLINGS

        if pooling not in POOLINGS:
            raise ValueError(f"variant pooling {pooling!r} is not one of {POOLINGS}")
        return (None if layer is None else int(layer), str(pooling))
    return None if layer is None else int(layer)


def unpack_key(key: int | tuple | None) -> tuple[int | None, str | None, str | None]:
    """(layer_idx, pooling, question_pooling) of an `extraction_key`, None where the partition's own is used."""
    if isinstance(key, tuple):
        return (*key, None) if len(key) == 2 else key
    return key, None, None


def _layer_of(variant: dict[str, Any], name: str, layers: dict[Any, Any] | None, how: str) -> tuple[Any, Any] | None:
    """(extraction key, those latents) for a variant that names a layer or a pooling, None otherwise;
    raises if they were not given. `how` says how to extract them; "{layer}" / "{pooling}" are filled in."""
    key = extraction_key(variant)
    if key is None:
        return None
    layer, pooling, question = unpack_key(key)
    if not layers or key not in layers:
        raise ValueError(
            f"variant {name!r}: no latents of layer_idx={layer}, pooling={pooling}, question_pooling={question} "
            f"were given: extract them ({how.format(layer=layer, pooling=pooling)}) and pass layers={{{key!r}: ...}}"
        )
    return key, layers[key]


def variant_config(base, variant: dict[str, Any], hidden_size: int):
    """The RJEPAConfig of one variant: base config, optional preset at the given width, section overrides."""
    from rjepa_core.config import PRESETS, RJEPAConfig, rjepa_tiny

    keys = {"name", "preset", "layer_idx", "pooling", "question_pooling", "targets", "chains_per_problem"}
    keys |= {"extra_train", *SECTIONS}
    unknown = sorted(set(variant) - keys)
    if unknown:
        raise ValueError(
            f"variant has unknown key(s) {unknown}; use name, preset, layer_idx, pooling, question_pooling, "
            f"targets, chains_per_problem, extra_train or {SECTIONS}"
        )
    cfg = base or RJEPAConfig(model=rjepa_tiny(hidden_size))
    d = cfg.to_dict()
    preset = variant.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"variant preset {preset!r} is not one of {sorted(PRESETS)}")
        d["model"] = dataclasses.asdict(PRESETS[preset](hidden_size))
    d["model"]["hidden_size"] = hidden_size
    for section in SECTIONS:
        d[section] = {**d[section], **(variant.get(section) or {})}
    return RJEPAConfig.from_dict(d)


def _scored_groups(groups, loss: dict[str, float]) -> list[list]:
    """EvalCandidates per problem group, each carrying its chain's JEPA-loss."""
    out = []
    for g in groups:
        row = [_to_candidate(c) for c in g]
        for c in row:
            c.jepa_loss = loss[c.cot_id]
        out.append(row)
    return out


def _measure(
    scorer,
    chains: list[ChainOfThought],
    latents: dict[str, np.ndarray],
    k: int,
    domain: str,
    questions: dict[str, np.ndarray] | None = None,
):
    groups, _ = _ordered_candidates(chains)
    groups = {pid: g[:k] for pid, g in groups.items() if len(g) >= 2}
    if not groups:
        raise ValueError("no validation problem has >= 2 candidates: sample K chains on the val split")
    flat = [c for g in groups.values() for c in g]
    missing = [c.cot_id for c in flat if c.cot_id not in latents]
    if missing:
        raise ValueError(f"{len(missing)} validation candidates have no latents (e.g. {missing[0]})")
    tic = time.perf_counter()
    qs = [(questions or {}).get(c.cot_id) for c in flat]
    scores = scorer.score([np.asarray(latents[c.cot_id]) for c in flat], [domain] * len(flat), qs)
    score_ms = (time.perf_counter() - tic) * 1000.0 / len(flat)
    loss = {c.cot_id: s.jepa_loss for c, s in zip(flat, scores, strict=True)}
    cands = _scored_groups(groups.values(), loss)
    labels = [[c.correct for c in g] for g in cands]
    return {
        "n_problems": len(cands),
        "k": k,
        "auroc": auroc([-c.jepa_loss for g in cands for c in g], [y for row in labels for y in row]),
        "auroc_within_problem": mean_within_group_auroc([[-c.jepa_loss for c in g] for g in cands], labels),
        "rerank_accuracy": accuracy([g[choose("jepa", g)].correct for g in cands]),
        "majority_accuracy": accuracy([g[choose("majority", g)].correct for g in cands]),
        "oracle": oracle_pass_at_k(labels, k),
        "score_ms_per_candidate": score_ms,
    }


def run_ablations(
    train_seqs: Sequence[Any],
    val_seqs: Sequence[Any],
    val_candidates: list[ChainOfThought],
    val_latents: dict[str, np.ndarray],
    variants: list[dict[str, Any]],
    *,
    out_dir: str | Path,
    base_config=None,
    layers: dict[int, LayerData] | None = None,
    k: int = 8,
    domain: str = "math",
    device: str = "cpu",
    val_questions: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """One row per variant: name, overrides, val_loss, steps, train_s, auroc, rerank_accuracy, ... or error.

    val_questions: cot_id -> question latent of the validation candidates (question-token models).
    """
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.jepa.trainer import train

    out_dir = Path(out_dir)
    rows = []
    for n, variant in enumerate(variants):
        name = str(variant.get("name") or f"variant{n}")
        row: dict[str, Any] = {"name": name, "variant": variant, "error": None}
        try:
            tr, va, cand, qs = train_seqs, val_seqs, val_latents, val_questions
            picked = _layer_of(variant, name, layers, "StudentLLM.extract(..., layer_idx={layer}, pooling={pooling})")
            if picked is not None:
                key, data = picked
                row["layer_idx"], row["pooling"], row["question_pooling"] = unpack_key(key)
                tr, va, cand, qs = data.train_seqs, data.val_seqs, data.candidate_latents, data.candidate_questions
            cfg = variant_config(base_config, variant, _width(tr))
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            result = train(cfg, tr, va, out_dir / f"{n:02d}-{safe}", resume=False, device=device)
            ck = load_checkpoint(result.checkpoint_dir)
            row.update(
                val_loss=result.best_val_loss,
                initial_val_loss=result.initial_val_loss,
                steps=result.steps,
                train_s=result.duration_s,
                sequences_per_s=result.sequences_per_s,
                std_preds=result.std_preds,
            )
            row.update(_measure(JEPAScorer.from_checkpoint(ck, device), val_candidates, cand, k, domain, qs))
        except ValueError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def _cap_student_targets(seqs: list, cap: int, seed: int) -> list:
    """At most `cap` valid student chains per problem (a fixed hash order picks which; gold chains all stay)."""
    import hashlib

    def rank(s) -> str:
        return hashlib.sha256(f"{seed}:{s.cot_id}".encode()).hexdigest()

    dropped, per_problem = set(), {}
    for s in sorted((s for s in seqs if s.origin != "gold"), key=rank):
        per_problem[s.problem_id] = per_problem.get(s.problem_id, 0) + 1
        if per_problem[s.problem_id] > cap:
            dropped.add(s.cot_id)
    return [s for s in seqs if s.cot_id not in dropped]  # the training order is kept


def _dump_candidates(path: Path, groups: list, fold_id: dict[str, int]) -> Path:
    import json

    from rjepa_core.io import atomic_write_text

    lines = []
    for g in groups:
        for c in g:
            lines.append(
                json.dumps(
                    {
                        "cot_id": c.cot_id,
                        "problem_id": c.problem_id,
                        "fold": fold_id[c.cot_id],
                        "answer": c.answer,
                        "correct": c.correct,
                        "logprob": c.logprob,
                        "num_tokens": c.num_tokens,
                        "num_steps": c.num_steps,
                        "jepa_loss": c.jepa_loss,
                        "step_surprise": c.step_surprise,
                    }
                )
            )
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _fold_of(problem_id: str, folds: int, seed: int) -> int:
    import hashlib

    return int(hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest(), 16) % folds


def _pick_accuracy(method: str, groups: list) -> float | None:
    return accuracy([g[choose(method, g)].correct for g in groups]) if groups else None


def cross_validated_ablations(
    seqs: Sequence[Any],
    candidates: list[ChainOfThought],
    variants: list[dict[str, Any]],
    *,
    out_dir: str | Path,
    base_config=None,
    folds: int = 5,
    seed: int = 0,
    device: str = "cpu",
    log=None,
    layers: dict[int, Sequence[Any]] | None = None,
    extra_train: dict[Any, Sequence[Any]] | None = None,
    dump_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Ablations by problem-level k-fold cross-validation over the train+val problems (never the test split).

    For each fold, a variant trains on the valid chains of the other folds' problems (the invalid ones
    are its hard negatives), early-stops on the held-out fold's *gold* chains (their labels are not the
    candidates'), then scores the held-out fold's sampled student candidates. Rows pool the held-out
    scores of all folds: `auroc` (-JEPA-loss vs correctness), `auroc_within_problem`, `rerank_accuracy`
    and `majority_accuracy` over the candidates each problem has, plus `fold_aurocs`.

    A variant with `train: {labels: majority}` trains without the validator's verdicts on student chains: a
    candidate is a target when it agrees with its problem's top answer, a negative otherwise
    (`rjepa_core.jepa.labels`); the held-out fold's labels are only read to measure it.

    A variant may also set `targets`: "all" (gold + valid student chains, the default), "student"
    or "gold" — which valid chains are JEPA targets —, `chains_per_problem`: at most that many valid
    student chains per problem as targets (how much more sampling buys), and `layer_idx` and/or
    `pooling`: its chains' latents are then taken from `layers[layer_idx]`, or `layers[(layer_idx or
    None, pooling)]` when it sets a pooling (the same chains extracted that way). `extra_train: true` adds the
    valid chains of `extra_train[key]` (e.g. a train_only source's gold chains, problems outside every fold,
    extracted like the variant's own latents: key = its extraction key, None for the partition's) to the
    training chains of every fold.

    Each row also has `selection`: the accuracy of every JEPA-based selection method on the held-out
    groups, its settings fitted on the other folds' held-out groups (`cross_validated_selection`). With
    `dump_dir`, the held-out candidates' scores are written to `<dump_dir>/<variant>.jsonl` (one line per
    candidate: ids, fold, answer, label, log-prob, JEPA-loss, per-step surprise) for selection studies
    that need no retraining.
    """
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.jepa.trainer import train

    base_pool = [s for s in seqs if s.split in ("train", "val")]
    base_ids = {s.cot_id for s in base_pool}
    cands = [c for c in candidates if c.cot_id in base_ids and not c.meta.get("greedy")]
    if not cands:
        raise ValueError("no sampled student candidates with latents on the train/val problems")
    out_dir = Path(out_dir)
    rows = []
    for n, variant in enumerate(variants):
        name = str(variant.get("name") or f"variant{n}")
        row: dict[str, Any] = {"name": name, "variant": variant, "error": None}
        targets = variant.get("targets", "all")
        try:
            if targets not in ("all", "student", "gold"):
                raise ValueError(f"variant {name!r}: targets must be all, student or gold, not {targets!r}")
            pool = base_pool
            picked = _layer_of(variant, name, layers, "rjepa ablate --layers {layer} / --pooling {pooling}")
            if picked is not None:
                key, layer_seqs = picked
                row["layer_idx"], row["pooling"], row["question_pooling"] = unpack_key(key)
                pool = [s for s in layer_seqs if s.cot_id in base_ids]
                missing = base_ids - {s.cot_id for s in pool}
                if missing:
                    raise ValueError(f"variant {name!r}: {len(missing)} train/val chains have no {key!r} latents")
            cap = variant.get("chains_per_problem")
            if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
                raise ValueError(f"variant {name!r}: chains_per_problem must be a positive integer, not {cap!r}")
            by_id = {s.cot_id: s for s in pool}
            cfg = variant_config(base_config, variant, _width(pool))
            pool = training_labels(pool, cfg.train.labels, candidates)
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            loss: dict[str, float] = {}
            surprise: dict[str, list[float]] = {}
            fold_id: dict[str, int] = {}
            fold_aurocs, steps, train_s = [], [], 0.0
            for f in range(folds):
                held = {c.problem_id for c in cands if _fold_of(c.problem_id, folds, seed) == f}
                if not held:
                    continue
                train_pool = [s for s in pool if s.problem_id not in held]
                tr = [
                    s
                    for s in train_pool
                    if s.is_valid and (targets == "all" or (s.origin == "gold") == (targets == "gold"))
                ]
                if cap is not None:
                    tr = _cap_student_targets(tr, cap, seed)
                if variant.get("extra_train"):
                    key = extraction_key(variant)
                    if not extra_train or key not in extra_train:
                        raise ValueError(
                            f"variant {name!r} asks for extra_train chains but none extracted as {key!r} were given"
                        )
                    added = [s for s in extra_train[key] if s.is_valid and s.problem_id not in held]
                    row["n_extra_train"] = len(added)
                    tr = tr + added
                negatives = [s for s in train_pool if not s.is_valid]
                if cfg.train.distinct_chains:  # as the pipeline's split_for_training: repeats count once
                    tr, negatives = distinct_chains(tr), distinct_chains(negatives)
                va = [s for s in pool if s.problem_id in held and s.origin == "gold"]
                result = train(
                    cfg,
                    tr,
                    va,
                    out_dir / f"{n:02d}-{safe}" / f"fold{f}",
                    resume=False,
                    negatives=negatives,
                    device=device,
                )
                steps.append(result.steps)
                train_s += result.duration_s
                scorer = JEPAScorer.from_checkpoint(load_checkpoint(result.checkpoint_dir), device)
                fold = [c for c in cands if c.problem_id in held]
                scores = scorer.score(
                    [np.asarray(by_id[c.cot_id].H) for c in fold],
                    [by_id[c.cot_id].domain for c in fold],
                    [getattr(by_id[c.cot_id], "Q", None) for c in fold],
                )
                for c, s in zip(fold, scores, strict=True):
                    loss[c.cot_id] = s.jepa_loss
                    surprise[c.cot_id] = [float(x) for x in s.step_surprise]
                    fold_id[c.cot_id] = f
                fold_aurocs.append(auroc([-loss[c.cot_id] for c in fold], [bool(c.is_valid) for c in fold]))
            groups, _ = _ordered_candidates(cands)
            groups = {pid: g for pid, g in groups.items() if len(g) >= 2}
            cand_rows = _scored_groups(groups.values(), loss)
            for g in cand_rows:
                for c in g:
                    c.step_surprise = surprise[c.cot_id]
            labels = [[c.correct for c in g] for g in cand_rows]
            row["selection"] = cross_validated_selection(cand_rows, [fold_id[g[0].cot_id] for g in cand_rows])
            if dump_dir is not None:
                row["candidates_file"] = str(_dump_candidates(Path(dump_dir) / f"{safe}.jsonl", cand_rows, fold_id))
            row.update(
                n_candidates=len(loss),
                n_correct=int(sum(bool(c.is_valid) for c in cands)),
                auroc=auroc([-loss[c.cot_id] for c in cands], [bool(c.is_valid) for c in cands]),
                auroc_within_problem=mean_within_group_auroc([[-c.jepa_loss for c in g] for g in cand_rows], labels),
                fold_aurocs=fold_aurocs,
                n_problems_with_2plus=len(cand_rows),
                rerank_accuracy=accuracy([g[choose("jepa", g)].correct for g in cand_rows]) if cand_rows else None,
                majority_accuracy=accuracy([g[choose("majority", g)].correct for g in cand_rows])
                if cand_rows
                else None,
                steps=steps,
                train_s=train_s,
            )
        except ValueError as exc:
            row["error"] = str(exc)
        if log:
            log(row)
        rows.append(row)
    return rows


def _energy(name: str, negatives: int, margin: float, pairs: str = "batch", weight: float = 1.0) -> dict[str, Any]:
    loss = {"hard_negatives": True, "num_hard_negatives": negatives, "energy_weight": weight}
    return {"name": name, "loss": {**loss, "energy_margin": margin, "energy_pairs": pairs}}


# The energy margin (configs/rjepa/energy.yaml is "energy margin 0.15, 64 negatives"): margin, how many wrong
# chains join each batch of 32 validated ones, which pairs pay.
ENERGY_SWEEP: list[dict[str, Any]] = [
    _energy("energy margin 0.05", 8, 0.05),
    _energy("energy margin 0.15", 8, 0.15),
    _energy("energy margin 0.05, same-problem pairs", 8, 0.05, "problem"),
    _energy("energy margin 0.15, weight 3, same-problem pairs", 8, 0.15, "problem", 3.0),
    _energy("energy margin 0.3, weight 3", 8, 0.3, weight=3.0),
    _energy("energy margin 0.15, 16 negatives", 16, 0.15),
    _energy("energy margin 0.15, 32 negatives", 32, 0.15),
    _energy("energy margin 0.3, 32 negatives", 32, 0.3),
    _energy("energy margin 0.15, 32 negatives, same-problem pairs", 32, 0.15, "problem"),
    _energy("energy margin 0.15, 64 negatives", 64, 0.15),
    _energy("energy margin 0.3, 64 negatives", 64, 0.3),
    _energy("energy margin 0.15, 128 negatives", 128, 0.15),
    # label-free: the student chains' labels are their agreement with the problem's majority answer
    {**_energy("energy margin 0.15, 64 negatives, majority labels", 64, 0.15), "train": {"labels": "majority"}},
    {"name": "majority labels", "train": {"labels": "majority"}},
]

# The sweep `rjepa ablate` runs: one axis changed at a time from the configured default.
DEFAULT_SWEEP: list[dict[str, Any]] = [
    {"name": "default"},
    {"name": "mask=random", "mask": {"kind": "random"}},
    {"name": "mask=hierarchical", "mask": {"kind": "hierarchical"}},
    {"name": "mask=conclusion", "mask": {"kind": "conclusion"}},
    {"name": "mask ratio 0.15-0.35", "mask": {"ratio_min": 0.15, "ratio_max": 0.35}},
    {"name": "loss=l2", "loss": {"kind": "l2"}},
    {"name": "loss=cosine", "loss": {"kind": "cosine"}},
    {"name": "no variance term", "loss": {"var_weight": 0.0}},
    {"name": "vicreg cov 0.04", "loss": {"vicreg_cov_weight": 0.04}},
    {"name": "infonce + hard negatives", "loss": {"infonce_weight": 0.5, "hard_negatives": True}},
    {"name": "infonce in-batch only", "loss": {"infonce_weight": 0.5, "hard_negatives": False}},
    *ENERGY_SWEEP,
    {"name": "no hidden-space head loss", "loss": {"hidden_weight": 0.0}},
    {"name": "score: max surprise", "score": {"aggregate": "max"}},
    {"name": "score: top-2 surprise", "score": {"aggregate": "top2"}},
    {"name": "score: windows of 2", "score": {"mode": "window", "window": 2}},
    {"name": "score: prefix", "score": {"mode": "prefix"}},
    {"name": "score: question only", "score": {"mode": "question"}},
    {"name": "distinct chains only", "train": {"distinct_chains": True}},
    {"name": "targets: student chains only", "targets": "student"},
    {"name": "targets: gold only", "targets": "gold"},
    {"name": "preset small", "preset": "small"},
    {"name": "no question token", "model": {"question_token": False}},
]

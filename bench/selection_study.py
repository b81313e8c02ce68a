"""Selection rules that use the JEPA-loss with the votes, compared on cross-validated held-out candidates.

    .venv/bin/rjepa ablate --version ms2 --only default          # writes the per-candidate dump
    .venv/bin/python bench/selection_study.py .rjepa/store/reports/smollm2-135m/ms2/ablations/default.jsonl \
        --out bench/results/selection_study_ms2.json

Reads the held-out candidate scores `rjepa ablate` dumps (each candidate scored by the fold model that
never saw its problem) and measures, per rule, the accuracy of the chosen chain. A rule's one setting
(temperature, weight, drop fraction) is chosen on the other folds' problems and applied to the fold's:
no number here is fitted on the problems it is measured on, and no test problem is read. The paired
difference with majority vote carries a bootstrap CI over problems. Rules that win here are then built
into `rjepa_core.inference.vote` and measured once on the test split by the eval report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rjepa_core.eval.metrics import paired_difference  # noqa: E402
from rjepa_core.validators.math import normalize_answer  # noqa: E402


def read_dump(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seed_mean(dumps: list[list[dict]]) -> list[dict]:
    """One dump from several models' dumps of the same held-out candidates (e.g. three seeds): each
    candidate's JEPA-loss and step surprises averaged over the models — a seed ensemble scored as one model."""
    by_id = [{r["cot_id"]: r for r in d} for d in dumps]
    first = by_id[0]
    for other in by_id[1:]:
        if other.keys() != first.keys() or any(other[k]["fold"] != first[k]["fold"] for k in first):
            raise SystemExit(
                "the dumps do not hold the same candidates in the same folds: use the dumps of one ablation run"
            )
    out = []
    for k, r in first.items():
        rows = [m[k] for m in by_id]
        out.append({
            **r,
            "jepa_loss": float(np.mean([x["jepa_loss"] for x in rows])),
            "step_surprise": [float(v) for v in np.mean([x["step_surprise"] for x in rows], axis=0)]
            if r["step_surprise"] else r["step_surprise"],
        })  # fmt: skip
    return out


def load(path: Path | list[Path]) -> list[dict]:
    paths = path if isinstance(path, list) else [path]
    rows = read_dump(paths[0]) if len(paths) == 1 else seed_mean([read_dump(p) for p in paths])
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        r["key"] = normalize_answer(r["answer"])
        groups[r["problem_id"]].append(r)
    return [{"pid": pid, "fold": g[0]["fold"], "cands": g} for pid, g in sorted(groups.items()) if len(g) >= 2]


def agg_loss(c: dict, how: str) -> float:
    s = c["step_surprise"] or [c["jepa_loss"]]
    if how == "loss":
        return float(c["jepa_loss"])
    if how == "max":
        return float(max(s))
    if how == "last":
        return float(s[-1])
    if how == "first":
        return float(s[0])
    if how in Z_AGGREGATES:  # filled by add_step_z
        return float(c[how])
    raise ValueError(how)


Z_AGGREGATES = ("zmax", "zmean", "zexcess")  # of the position-normalised surprise; zexcess = sum of z above 0


def add_step_z(groups: list[dict]) -> None:
    """Each candidate's position-normalised surprise aggregates, the normaliser fitted (label-free) on the
    other folds' candidates, as a checkpoint's is on its validation split."""
    from rjepa_core.jepa.normalisation import SurpriseNorm

    for f in sorted({g["fold"] for g in groups}):
        norm = SurpriseNorm.fit([c["step_surprise"] for g in groups if g["fold"] != f for c in g["cands"]])
        for c in (c for g in groups if g["fold"] == f for c in g["cands"]):
            z = np.asarray(norm.z(c["step_surprise"]))
            c["zmax"], c["zmean"], c["zexcess"] = float(z.max()), float(z.mean()), float(np.clip(z, 0, None).sum())


def zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def pick_by_cluster(keys, cluster_score: dict, within: np.ndarray) -> int:
    """Index of the best chain (highest `within`) of the best-scoring answer cluster."""
    best = max(
        cluster_score,
        key=lambda k: (round(cluster_score[k], 12), max(within[i] for i, kk in enumerate(keys) if kk == k)),
    )
    idx = [i for i, k in enumerate(keys) if k == best]
    return max(idx, key=lambda i: (within[i], -i))


def weighted_vote(keys, weights: np.ndarray, within: np.ndarray) -> int:
    totals: dict[str, float] = defaultdict(float)
    for k, w in zip(keys, weights, strict=True):
        if k is not None:
            totals[k] += float(w)
    if not totals:
        return int(np.argmax(within))
    return pick_by_cluster(keys, totals, within)


def choose(rule: str, param, g: dict, scale: float) -> int:
    c = g["cands"]
    keys = [x["key"] for x in c]
    lp = np.array([x["logprob"] if x["logprob"] is not None else -1e9 for x in c], dtype=np.float64)
    lpm = lp / np.array([max(x["num_tokens"], 1) for x in c])
    if rule == "majority":
        return weighted_vote(keys, np.ones(len(c)), lp)
    if rule == "logprob_sum":
        return int(np.argmax(lp))
    agg, rest = rule.split(":", 1)
    if agg == "lp-beta*loss":  # z(log-prob sum) - beta * z(JEPA-loss): does the JEPA term add to log-prob?
        s = zscore(lp) - param * zscore(np.array([x["jepa_loss"] for x in c], dtype=np.float64))
        if rest == "rerank":
            return int(np.argmax(s))
        return weighted_vote(keys, np.exp(s - s.max()), s)  # rest == "softvote"
    if agg == "neglogprob":  # control: the same rule on -log-prob instead of a JEPA score
        loss = -lp
    elif agg == "random":  # control: a seeded random score per candidate
        loss = np.random.default_rng(zlib.crc32(g["pid"].encode())).random(len(c))
    else:
        loss = np.array([agg_loss(x, agg) for x in c], dtype=np.float64)
    if rest == "rerank":
        return int(np.argmin(loss))
    if rest == "vote":  # softmax(-loss / (tau_rel * scale)), the shipped jepa_vote's form
        logits = -loss / (param * scale)
        w = np.exp(logits - logits.max())
        return weighted_vote(keys, w, -loss)
    if rest == "zvote":  # within-problem z-scored loss: scale-free per problem
        z = zscore(loss)
        logits = -z / param
        return weighted_vote(keys, np.exp(logits - logits.max()), -loss)
    if rest == "tiebreak":  # majority; ties between clusters go to the most lawful chain's cluster
        return weighted_vote(keys, np.ones(len(c)), -loss)
    if rest == "count+lambda*min":  # votes + lambda * (best chain's within-problem -z of the cluster)
        z = -zscore(loss)
        cl: dict[str, float] = defaultdict(float)
        best: dict[str, float] = {}
        for k, zi in zip(keys, z, strict=True):
            if k is not None:
                cl[k] += 1.0
                best[k] = max(best.get(k, -1e9), zi)
        if not cl:
            return int(np.argmin(loss))
        return pick_by_cluster(keys, {k: cl[k] + param * best[k] for k in cl}, -loss)
    if rest == "count+lambda*mean":  # votes + lambda * mean within-problem -z of the cluster
        z = -zscore(loss)
        cl = defaultdict(list)
        for k, zi in zip(keys, z, strict=True):
            if k is not None:
                cl[k].append(zi)
        if not cl:
            return int(np.argmin(loss))
        return pick_by_cluster(keys, {k: len(v) + param * float(np.mean(v)) for k, v in cl.items()}, -loss)
    if rest == "filter":  # drop the param fraction least lawful, then majority (ties: log-prob)
        n = len(c)
        n_drop = min(int(round(param * n)), n - 1)
        order = np.argsort(-loss, kind="stable")
        w = np.ones(n)
        w[order[:n_drop]] = 0.0
        return weighted_vote([k if w[i] else None for i, k in enumerate(keys)], w, lp)
    if rest == "lp+jepa vote":  # softmax over z(logprob/token) - z(loss), weighted by param on the JEPA term
        s = zscore(lpm) - param * zscore(loss)
        return weighted_vote(keys, np.exp(s - s.max()), s)
    raise ValueError(rule)


GRIDS = {
    "vote": [0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0],
    "zvote": [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0],
    "count+lambda*min": [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0],
    "count+lambda*mean": [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0],
    "filter": [0.125, 0.25, 0.375, 0.5],
    "lp+jepa vote": [0.0, 0.25, 0.5, 1.0, 2.0],
    "softvote": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
}
BETA_GRID = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]  # of the lp-beta*loss rules


def grid_of(rule: str) -> list:
    agg, _, rest = rule.partition(":")
    return BETA_GRID if agg == "lp-beta*loss" else GRIDS.get(rest, [None])


FEATURES = ("-loss", "-zexcess", "-zmax", "-last", "logprob", "logprob/token", "tokens")


def features(g: dict) -> np.ndarray:
    """Per-candidate features, each z-scored within the problem, shape (K, len(FEATURES))."""
    c = g["cands"]
    cols = [
        [-x["jepa_loss"] for x in c],
        [-x["zexcess"] for x in c],
        [-x["zmax"] for x in c],
        [-x["step_surprise"][-1] for x in c],
        [x["logprob"] for x in c],
        [x["logprob"] / max(x["num_tokens"], 1) for x in c],
        [x["num_tokens"] for x in c],
    ]
    return np.stack([zscore(np.asarray(v, dtype=np.float64)) for v in cols], axis=1)


def labelled_combination(groups: list[dict], base: np.ndarray, taus=(0.5, 1.0, 2.0)) -> dict:
    """A supervised control: a logistic regression on FEATURES fitted on the other folds' *labels*, its score
    as softmax(s / tau) vote weights. How much more the chain-level JEPA numbers and log-prob hold for
    selection than the label-free rules use (every tau shown: a control, not a method)."""
    from sklearn.linear_model import LogisticRegression

    fold_of = np.array([g["fold"] for g in groups])
    out = {"features": list(FEATURES), "by_tau": {}}
    scores: dict[int, np.ndarray] = {}
    for f in sorted(set(fold_of.tolist())):
        train = [g for g in groups if g["fold"] != f]
        x = np.concatenate([features(g) for g in train])
        y = np.concatenate([[bool(c["correct"]) for c in g["cands"]] for g in train])
        model = LogisticRegression(C=1.0).fit(x, y)
        for i in np.flatnonzero(fold_of == f):
            scores[int(i)] = model.decision_function(features(groups[i]))
    for tau in taus:
        ok = np.zeros(len(groups))
        for i, g in enumerate(groups):
            s = scores[i]
            ok[i] = g["cands"][weighted_vote([c["key"] for c in g["cands"]], np.exp((s - s.max()) / tau), s)]["correct"]
        d = paired_difference(ok, base, 2000, 0)
        out["by_tau"][str(tau)] = {"accuracy": float(ok.mean()), "minus_majority": d["mean"], "ci95": d["ci95"]}
    return out


def best_param(rule: str, grid: list, table: dict, rows: np.ndarray):
    """The rule's setting with the best accuracy on `rows`; ties: the larger temperature, else the first."""
    rest = rule.split(":", 1)[-1]
    order = grid[::-1] if rest in ("vote", "zvote") else grid
    return max(order, key=lambda p: table[p][rows].mean() - 1e-9 * order.index(p))


def run_rule(rule: str, groups: list[dict], scales: dict[int, float]) -> tuple[np.ndarray, dict]:
    grid = grid_of(rule)
    folds = sorted({g["fold"] for g in groups})
    ok = np.zeros(len(groups))
    chosen = {}
    table = {
        p: np.array([g["cands"][choose(rule, p, g, scales[g["fold"]])]["correct"] for g in groups], float) for p in grid
    }
    fold_of = np.array([g["fold"] for g in groups])
    for f in folds:
        best = best_param(rule, grid, table, fold_of != f)
        chosen[str(f)] = best
        ok[fold_of == f] = table[best][fold_of == f]
    curve = {str(p): float(table[p].mean()) for p in grid} if grid != [None] else None
    return ok, {"chosen_by_fold": chosen, "curve": curve, "table": table, "grid": grid}


def nested_choice(rules: list[str], infos: dict[str, dict], groups: list[dict]) -> tuple[np.ndarray, dict]:
    """The whole study as one procedure, held out: for each fold, pick the rule and its setting with the best
    accuracy on the other folds' problems, and apply it to the fold. Its accuracy is what "take the study's
    winner" is worth on unseen problems (the winner's own row is optimistic: it was picked among many)."""
    fold_of = np.array([g["fold"] for g in groups])
    ok = np.zeros(len(groups))
    chosen = {}
    for f in sorted(set(fold_of.tolist())):
        rows = fold_of != f
        fits = {r: best_param(r, infos[r]["grid"], infos[r]["table"], rows) for r in rules}
        rule = max(rules, key=lambda r: infos[r]["table"][fits[r]][rows].mean() - 1e-9 * rules.index(r))
        chosen[str(f)] = [rule, fits[rule]]
        ok[fold_of == f] = infos[rule]["table"][fits[rule]][fold_of == f]
    return ok, {"chosen_by_fold": chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", type=Path, nargs="+", help="a dump; several: their seed ensemble (mean scores)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t = time.monotonic()
    groups = load(args.dump)
    add_step_z(groups)
    scales = {}
    for f in {g["fold"] for g in groups}:
        losses = [c["jepa_loss"] for g in groups if g["fold"] == f for c in g["cands"]]
        scales[f] = float(np.std(losses))
    rules = ["majority", "logprob_sum"]
    for agg in ("loss", "max", "last", *Z_AGGREGATES):
        rules += [
            f"{agg}:{r}"
            for r in ("rerank", "vote", "zvote", "tiebreak", "count+lambda*min", "count+lambda*mean", "filter")
        ]
    rules += ["loss:lp+jepa vote", "neglogprob:filter", "random:filter", "neglogprob:vote"]
    rules += ["lp-beta*loss:rerank", "lp-beta*loss:softvote"]
    base, _ = run_rule("majority", groups, scales)
    out, infos = {}, {}
    for rule in rules:
        ok, info = run_rule(rule, groups, scales)
        infos[rule] = {"table": info.pop("table"), "grid": info.pop("grid")}
        d = paired_difference(ok, base, 2000, 0)
        out[rule] = {"accuracy": float(ok.mean()), "minus_majority": d["mean"], "ci95": d["ci95"], **info}
        print(
            f"{rule:<28} {ok.mean():.3f}  {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]  "
            f"{info['chosen_by_fold']}"
        )
    jepa_rules = [r for r in rules if r.split(":", 1)[0] in ("loss", "max", "last", *Z_AGGREGATES)]
    ok, info = nested_choice(jepa_rules, infos, groups)
    d = paired_difference(ok, base, 2000, 0)
    nested = {"accuracy": float(ok.mean()), "minus_majority": d["mean"], "ci95": d["ci95"], **info}
    nested["rules_searched"] = len(jepa_rules)
    print(
        f"{'nested: best JEPA rule':<28} {ok.mean():.3f}  {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
    )
    n_c = sum(len(g["cands"]) for g in groups)
    result = {
        "benchmark": "selection_study",
        "dump": [str(p) for p in args.dump] if len(args.dump) > 1 else str(args.dump[0]),
        "n_problems": len(groups),
        "n_candidates": n_c,
        "protocol": "cross-validated held-out candidates of `rjepa ablate`; each rule's setting chosen on the "
        "other folds' problems; paired bootstrap (2000) vs majority over problems",
        "command": "python bench/selection_study.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": time.monotonic() - t,
        "rules": out,
        "nested_best_jepa_rule": nested,
        "labelled_combination": labelled_combination(groups, base),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

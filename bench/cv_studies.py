"""First-error localisation rules and seed ensembles, compared on cross-validated held-out candidates.

    .venv/bin/rjepa ablate --version ms2 --only default "seed " --seeds 1 2     # per-candidate dumps
    .venv/bin/python bench/cv_studies.py --version ms2 --seeds default seed_1 seed_2 \
        --out bench/results/cv_studies_ms2.json

Reads the dumps `rjepa ablate` writes (each train+val candidate scored by the fold model that never saw
its problem; no test problem is read) and the partition's student chains (for the labelled first wrong
step). Localisation: for each fold, the surprise normaliser is fitted on the other folds' candidates
(label-free, as the checkpoint's is on the validation split) and the `first_above` threshold on the
other folds' wrong chains (as `fit_selection` does on validation), then both are applied to the fold; the
role model (a position prior of the first error and one z Gaussian for the steps before, at and after it)
is fitted on the other folds' wrong chains too.
Every rule is reported with the baselines of `rjepa_core.eval.localisation` (uniform chance, the same
picks' positions drawn at random, the best fixed position). Seed ensemble: AUROC, within-problem AUROC
and rerank accuracy of each seed's JEPA-loss and of the mean of their z-scored losses.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rjepa_core.eval.localisation import (  # noqa: E402
    argmax_pick,
    first_above_pick,
    first_error_localisation,
    first_wrong_step_of,
    fit_localisation_threshold,
)
from rjepa_core.eval.metrics import auroc, mean_within_group_auroc  # noqa: E402
from rjepa_core.jepa.normalisation import DEFAULT_FIRST_ABOVE, SurpriseNorm  # noqa: E402
from rjepa_core.schemas import ChainOfThought, read_records  # noqa: E402
from rjepa_core.store.layout import StorageLayout  # noqa: E402


def load_dump(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def localisation_study(rows: list[dict], chains: dict[str, ChainOfThought]) -> dict:
    """Each rule's pooled held-out hit rate on wrong chains with >= 3 steps (one fit per fold)."""
    folds = sorted({r["fold"] for r in rows})
    picked: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    thresholds, role_means = {}, {}

    def labelled(subset):
        out = []
        for r in subset:
            c = chains[r["cot_id"]]
            if not c.is_valid and len(r["step_surprise"]) == len(c.steps):
                out.append((r["step_surprise"], first_wrong_step_of(c.steps, c.meta)))
        return out

    for f in folds:
        train = [r for r in rows if r["fold"] != f]
        held = labelled([r for r in rows if r["fold"] == f])
        norm = SurpriseNorm.fit([r["step_surprise"] for r in train])
        fit = fit_localisation_threshold([norm.z(s) for s, _ in labelled(train)], [w for _, w in labelled(train)])
        thresholds[f] = fit["threshold"]
        roles = fit_role_model([norm.z(s) for s, _ in labelled(train)], [w for _, w in labelled(train)])
        role_means[f] = [m for m, _ in roles["roles"]]
        z = [norm.z(s) for s, _ in held]
        for name, scores, pick in (
            ("argmax surprise", [s for s, _ in held], argmax_pick),
            ("argmax z", z, argmax_pick),
            (f"first_above z > {DEFAULT_FIRST_ABOVE} (label-free)", z, first_above_pick(DEFAULT_FIRST_ABOVE)),
            ("first_above, threshold fitted on the other folds", z, first_above_pick(fit["threshold"])),
            ("role model (position prior x z before / at / after the error), fitted on the other folds", z,
             role_model_pick(roles)),
        ):  # fmt: skip
            # each chain's pick as a one-hot of its length: `first_error_localisation`'s argmax gives it back
            picked[name][0].extend(np.eye(len(s))[int(pick(s))] for s in scores)
            picked[name][1].extend(w for _, w in held)
    rules = {name: first_error_localisation(onehot, wrong, min_steps=3) for name, (onehot, wrong) in picked.items()}
    return {
        "rules": rules,
        "thresholds_by_fold": thresholds,
        "role_model_z_means_by_fold": role_means,  # mean z of steps before / at / after the first error
        "n_folds": len(folds),
        "position_controlled_auroc": position_controlled_auroc(rows, chains),
    }


ROLE_MAX_LEN = 8  # chains longer than this share the position prior of this length


def fit_role_model(step_z: list[list[float]], wrong: list[int]) -> dict:
    """A three-role model of labelled wrong chains: the position prior of the first error per chain length,
    and a Gaussian of the step z-score for steps before it, at it, and after it (add-one smoothed prior)."""
    values: dict[int, list[float]] = defaultdict(list)
    counts: dict[int, np.ndarray] = {}
    for z, w in zip(step_z, wrong, strict=True):
        if w is None or not 0 <= w < len(z):  # unlabelled
            continue
        n = min(len(z), ROLE_MAX_LEN)
        counts.setdefault(n, np.ones(n))[min(w, n - 1)] += 1.0
        for j, x in enumerate(z):
            values[0 if j < w else 1 if j == w else 2].append(x)
    roles = [(float(np.mean(values[k])), float(np.std(values[k]) + 1e-3)) if len(values[k]) > 1 else (0.0, 1.0)
             for k in range(3)]  # fmt: skip
    return {"roles": roles, "prior": {n: c / c.sum() for n, c in counts.items()}}


def role_model_pick(model: dict):
    """The first-error position with the highest posterior under `fit_role_model`'s model."""

    def pick(z) -> int:
        n = len(z)
        prior = model["prior"].get(min(n, ROLE_MAX_LEN))
        prior = prior if prior is not None and len(prior) == n else np.full(n, 1.0 / n)
        post = []
        for w in range(n):
            ll = sum(
                -0.5 * ((x - m) / sd) ** 2 - np.log(sd)
                for j, x in enumerate(z)
                for m, sd in [model["roles"][0 if j < w else 1 if j == w else 2]]
            )
            post.append(np.log(prior[w]) + ll)
        return int(np.argmax(post))

    return pick


def position_controlled_auroc(rows: list[dict], chains: dict[str, ChainOfThought]) -> dict:
    """Per step position j: AUROC of the raw surprise at j, first wrong step at j vs a right step at j (a valid
    chain's, or a wrong chain's before its first error) — the step signal with the positional habit removed."""
    out = {}
    for j in range(max(len(r["step_surprise"]) for r in rows)):
        scores, labels = [], []
        for r in rows:
            c = chains[r["cot_id"]]
            if len(r["step_surprise"]) != len(c.steps) or j >= len(c.steps):
                continue
            w = None if c.is_valid else first_wrong_step_of(c.steps, c.meta)
            if c.is_valid or (w is not None and w > j):
                scores.append(r["step_surprise"][j])
                labels.append(False)
            elif w == j:
                scores.append(r["step_surprise"][j])
                labels.append(True)
        if any(labels) and not all(labels):
            out[f"step {j + 1}"] = {
                "auroc": auroc(scores, labels),
                "n_first_wrong": sum(labels),
                "n_right": labels.count(False),
            }
    return out


def seed_ensemble(dumps: dict[str, list[dict]]) -> dict:
    names = list(dumps)
    ids = [r["cot_id"] for r in dumps[names[0]]]
    by = {n: {r["cot_id"]: r for r in rows} for n, rows in dumps.items()}
    y = [bool(by[names[0]][i]["correct"]) for i in ids]
    groups = defaultdict(list)
    for k, i in enumerate(ids):
        groups[by[names[0]][i]["problem_id"]].append(k)
    groups = [g for g in groups.values() if len(g) >= 2]

    def z(n):
        v = np.array([by[n][i]["jepa_loss"] for i in ids])
        return (v - v.mean()) / v.std()

    def measure(loss: np.ndarray) -> dict:
        return {
            "auroc": auroc(list(-loss), y),
            "auroc_within_problem": mean_within_group_auroc(
                [list(-loss[g]) for g in groups], [[y[k] for k in g] for g in groups]
            ),
            "rerank_accuracy": float(np.mean([y[g[int(np.argmin(loss[g]))]] for g in groups])),
        }

    out = {n: measure(z(n)) for n in names}
    out["ensemble (mean of z-scored losses)"] = measure(np.mean([z(n) for n in names], axis=0))
    out["majority_accuracy_note"] = "rerank_accuracy is over problems with >= 2 candidates; see ablations_<v>.json"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--version", default="ms2")
    ap.add_argument("--store", default=str(ROOT / ".rjepa/store"))
    ap.add_argument("--localisation-dump", default="default", help="the dump (variant) localisation is studied on")
    ap.add_argument("--seeds", nargs="*", default=[], help="dumps of the same variant trained with other seeds")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    layout = StorageLayout(args.store)
    folder = layout.reports_dir(args.llm, args.version) / "ablations"
    chains = {c.cot_id: c for c in read_records(ChainOfThought, layout.student_chains_path(args.llm, args.version))}
    result = {
        "command": "python bench/cv_studies.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "llm": args.llm,
        "version": args.version,
        "localisation": localisation_study(load_dump(folder / f"{args.localisation_dump}.jsonl"), chains),
    }
    if args.seeds:
        result["seed_ensemble"] = seed_ensemble({n: load_dump(folder / f"{n}.jsonl") for n in args.seeds})
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    for name, row in result["localisation"]["rules"].items():
        print(
            f"{name:<52} hit {row['hit_rate']:.3f} (chance {row['chance_rate']:.3f}, matched "
            f"{row['matched_chance_rate']:.3f}, best constant {row['best_constant_rate']:.3f}) n={row['n']}"
        )
    for name, row in (result.get("seed_ensemble") or {}).items():
        if isinstance(row, dict):
            print(
                f"{name:<40} AUROC {row['auroc']:.3f} within {row['auroc_within_problem']:.3f} "
                f"rerank {row['rerank_accuracy']:.3f}"
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Does R-JEPA's prediction of a masked step depend on the chain it sits in? (issue 12 diagnostic)

    .venv/bin/python bench/prediction_specificity.py --version ms3 --split val \
        --out bench/results/prediction_specificity_ms3.json

Why: the JEPA-loss ranks chains about as well as the votes and the log-prob do, but adds nothing to them, and
on ms2/ms3 the latent decoder reads true step latents almost perfectly (98 % arithmetically right) while
R-JEPA's decoded predictions are never right (0 of 381). If the predictor ignored the other steps and the
question, its loss would measure how typical a step is at its position — which the votes and the log-prob
already know — not whether the step follows from the chain.

How: the partition's newest checkpoint; every step j of every valid chain of `--split` (≥ 2 steps) is masked
and predicted (`jepa.scoring.predict_masked`, the way the scorer does it), in the target encoder's space,
from (a) the chain's own other steps and question, and (b) the other steps and question of another problem's
valid chain of the same length (the context swapped, the target kept). Distances are the checkpoint's loss
(mean absolute difference). Reported: the mean distance to the true target with the own and the swapped
context, how often the own context is closer, the distance of the train split's mean target at that
(position, length) — a context-free predictor — and the rank of the true target among the same-position
targets of other problems' chains by distance to the prediction (top-1 and mean percentile; chance 1/pool).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rjepa_assets.defs.resources import StorageResource  # noqa: E402
from rjepa_core.io import atomic_write_json  # noqa: E402
from rjepa_core.jepa.checkpoint import load_checkpoint  # noqa: E402
from rjepa_core.jepa.scoring import JEPAScorer, predict_masked  # noqa: E402
from rjepa_core.pipeline import newest_checkpoint  # noqa: E402
from rjepa_core.store.latents import LatentStore  # noqa: E402


def _ci(x: np.ndarray, rng: np.random.Generator, n: int = 1000) -> list[float]:
    means = [float(np.mean(x[rng.integers(0, len(x), len(x))])) for _ in range(n)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--version", default="ms3")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t = time.monotonic()
    layout = StorageResource().layout()
    ck = load_checkpoint(newest_checkpoint(layout, args.llm, args.version))
    scorer = JEPAScorer.from_checkpoint(ck)
    model = scorer.model
    seqs = [s for s in LatentStore(layout).read(args.llm, args.version) if s.is_valid and s.num_steps >= 2]
    mine = [s for s in seqs if s.split == args.split]
    train = [s for s in seqs if s.split == "train"]
    if len(mine) < 10:
        raise SystemExit(f"{len(mine)} valid chains of >= 2 steps in {args.split}: too few")

    def targets(group) -> list[np.ndarray]:
        H = [np.asarray(s.H, dtype=np.float32) for s in group]
        dom, qs, z = scorer._prepare(H, [s.domain for s in group], [s.Q for s in group])
        return [x.numpy() for x in z]

    z_mine, z_train = targets(mine), targets(train)
    mean_at = defaultdict(list)  # (position, length) -> train targets
    for s, z in zip(train, z_train, strict=True):
        for j in range(s.num_steps):
            mean_at[(j, s.num_steps)].append(z[j])
    mean_at = {k: np.mean(v, axis=0) for k, v in mean_at.items()}
    by_len = defaultdict(list)
    for i, s in enumerate(mine):
        by_len[s.num_steps].append(i)
    rng = np.random.default_rng(args.seed)
    q_on = bool(model.cfg.question_token)
    rows = []
    for i, s in enumerate(mine):
        others = [k for k in by_len[s.num_steps] if mine[k].problem_id != s.problem_id]
        if not others:
            continue
        o = mine[int(rng.choice(others))]
        H, Ho = np.asarray(s.H, dtype=np.float32), np.asarray(o.H, dtype=np.float32)
        for j in range(s.num_steps):
            own, _ = predict_masked(model, H, [j], s.domain, s.Q if q_on else None)
            swapped_H = Ho.copy()
            swapped_H[j] = H[j]  # the masked slot is never read; the context is the other chain's
            swap, _ = predict_masked(model, swapped_H, [j], s.domain, o.Q if q_on else None)
            true = z_mine[i][j]
            pool = [z_mine[k][j] for k in others]
            d_pool = np.array([np.abs(own[0] - p).mean() for p in pool])
            d_own = float(np.abs(own[0] - true).mean())
            base = mean_at.get((j, s.num_steps))
            rows.append(
                {
                    "position": j,
                    "length": s.num_steps,
                    "own": d_own,
                    "swapped": float(np.abs(swap[0] - true).mean()),
                    "train_mean": float(np.abs(base - true).mean()) if base is not None else np.nan,
                    "top1": float(d_own < d_pool.min()),
                    "percentile": float((d_pool > d_own).mean()),
                    "chance": 1.0 / (len(pool) + 1),
                }
            )
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}
    ok = ~np.isnan(col["train_mean"])
    out = {
        "benchmark": "prediction_specificity",
        "command": "python bench/prediction_specificity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": str(ck.path),
        "split": args.split,
        "n_chains": len(mine),
        "n_steps": len(rows),
        "distance_own_context": float(col["own"].mean()),
        "distance_own_context_ci95": _ci(col["own"], rng),
        "distance_swapped_context": float(col["swapped"].mean()),
        "distance_swapped_context_ci95": _ci(col["swapped"], rng),
        "own_context_closer_rate": float((col["own"] < col["swapped"]).mean()),
        "own_minus_swapped_ci95": _ci(col["own"] - col["swapped"], rng),
        "distance_train_mean_at_position": float(col["train_mean"][ok].mean()),
        "own_closer_than_train_mean_rate": float((col["own"][ok] < col["train_mean"][ok]).mean()),
        "retrieval_top1": float(col["top1"].mean()),
        "retrieval_chance": float(col["chance"].mean()),
        "retrieval_mean_percentile": float(col["percentile"].mean()),
        "by_position": {
            str(j): {
                "n": int((col["position"] == j).sum()),
                "own": float(col["own"][col["position"] == j].mean()),
                "swapped": float(col["swapped"][col["position"] == j].mean()),
                "train_mean": float(np.nanmean(col["train_mean"][col["position"] == j])),
                "retrieval_top1": float(col["top1"][col["position"] == j].mean()),
            }
            for j in sorted({int(p) for p in col["position"]})
        },
        "wall_s": round(time.monotonic() - t, 1),
    }
    atomic_write_json(args.out, out)
    print({k: v for k, v in out.items() if k != "by_position"})
    print(out["by_position"])


if __name__ == "__main__":
    main()

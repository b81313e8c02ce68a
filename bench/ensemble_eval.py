"""A seed ensemble of the default R-JEPA, measured once on a version's test split (issue 12).

    .venv/bin/python bench/ensemble_eval.py --version ms2 --seeds 0 1 2 \
        --out bench/results/eval_ms2_seed_ensemble.json

Why: on `ms2` train+val the three seeds' cross-validated dumps, scored as one model, gave the steadiest JEPA
selection seen (`bench/selection_study.py default.jsonl seed_1.jsonl seed_2.jsonl`: nested +3.2 [+1.1, +5.7]
over majority, against +4.3 / +0.0 / +0.4 for the seeds alone). This measures that choice once on test.

How: one R-JEPA per seed is trained on the partition's stored latents as `jepa_checkpoint` trains it
(`pipeline.train_jepa` with the default config, `train.seed` and `mask.seed` set; calibration and the
inference settings fitted on the validation split by `pipeline.tune_selection`); nothing is published. The
ensemble (`jepa.scoring.EnsembleScorer`: mean step surprise of the members) gets its own vote temperature,
surprise norm and localisation threshold from the same validation candidates (`fit_selection`). Every member
and the ensemble then go through the eval report's `evaluate` on the test split: the same candidates, the
same verifier and probe. With seed 0 first, its row is the partition's default checkpoint's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rjepa_assets.defs.resources import StorageResource  # noqa: E402
from rjepa_core.eval.evaluation import evaluate, fit_selection  # noqa: E402
from rjepa_core.eval.report import summary  # noqa: E402
from rjepa_core.io import atomic_write_json  # noqa: E402
from rjepa_core.jepa.checkpoint import load_checkpoint  # noqa: E402
from rjepa_core.jepa.normalisation import SurpriseNorm  # noqa: E402
from rjepa_core.jepa.scoring import EnsembleScorer, JEPAScorer  # noqa: E402
from rjepa_core.pipeline import added_test_ids, evaluation_inputs, load_rjepa_config, train_jepa, tune_selection  # noqa: E402
from rjepa_core.schemas import ChainOfThought, Problem, read_records  # noqa: E402
from rjepa_core.store.latents import LatentStore  # noqa: E402


def ensemble_of(members: list[JEPAScorer], problems, chains, H, Q) -> tuple[EnsembleScorer, dict]:
    """The members scored as one, with its inference settings fitted on the validation candidates."""
    ens = EnsembleScorer(members)
    fitted = fit_selection(ens, problems, chains, H, questions=Q)
    if "surprise_norm" in fitted:
        ens.surprise_norm = SurpriseNorm.from_dict(fitted["surprise_norm"])
    loc = fitted.get("localisation") or {}
    if "threshold" in loc:
        ens.localisation_threshold, ens.localisation_source = float(loc["threshold"]), loc.get("source")
    return ens, fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--version", default="ms2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "rjepa" / "default.yaml")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-over", help="parent version: evaluate only the test problems it lacks")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if len(args.seeds) < 2:
        raise SystemExit("--seeds: an ensemble needs at least two seeds")
    t = time.monotonic()
    layout = StorageResource().layout()
    problems = read_records(Problem, layout.problems_path(args.version))
    chains = read_records(ChainOfThought, layout.student_chains_path(args.llm, args.version))
    seqs = LatentStore(layout).read(args.llm, args.version)
    if not seqs:
        raise SystemExit(f"no latents for {args.llm}/{args.version}: run `rjepa demo --version {args.version}` first")
    try:
        ids = added_test_ids(layout, args.version, args.new_over) if args.new_over else None
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    test = evaluation_inputs(layout, args.llm, args.version, ids)

    def measure(scorer, tau_rel, tau_source) -> dict:
        report = evaluate(
            scorer=scorer, ks=(args.k,), llm_tag=args.llm, dataset_version=args.version,
            tau_rel=tau_rel, tau_source=tau_source, **test,
        )  # fmt: skip
        return summary(report, args.k)

    members, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cfg = load_rjepa_config(args.config, seqs[0].hidden_size).replace(train={"seed": seed}, mask={"seed": seed})
            res, _ = train_jepa(
                seqs, cfg, Path(tmp) / f"seed_{seed}", device="cpu", chains=chains,
                llm_tag=args.llm, dataset_version=args.version,
            )  # fmt: skip
            fitted = tune_selection(layout, args.llm, args.version, res.checkpoint_dir, seqs)
            scorer = JEPAScorer.from_checkpoint(load_checkpoint(res.checkpoint_dir))
            members.append(scorer)
            vote = fitted.get("jepa_vote") or {}
            results[f"seed {seed}"] = measure(scorer, vote.get("tau_rel"), f"fitted on val: {vote.get('source')}")
            print(f"[ensemble] seed {seed}: {res.steps} steps, test {_line(results[f'seed {seed}'])}")
        ens, fitted = ensemble_of(members, problems, chains, test["latents"], test["questions"])
        vote = fitted.get("jepa_vote") or {}
        results["ensemble"] = measure(ens, vote.get("tau_rel"), f"fitted on val: {vote.get('source')}")
        print(f"[ensemble] mean of {len(members)} seeds: test {_line(results['ensemble'])}")
    atomic_write_json(
        args.out,
        {
            "benchmark": "ensemble_eval",
            "command": "python bench/ensemble_eval.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seeds": args.seeds,
            "test_problems": len(test["problems"]),
            **({"subset": f"test problems of {args.version} that {args.new_over} lacks"} if args.new_over else {}),
            "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
            "wall_s": time.monotonic() - t,
            "results": results,
        },
    )
    print(f"wrote {args.out}")


def _line(s: dict) -> str:
    paired = s["paired_vs_majority"]
    picks = ("jepa", "jepa_vote", "jepa_filter_majority", "jepa_excess_filter_majority")
    diffs = "  ".join(f"{m} {paired[m]['diff']:+.3f}" for m in picks if m in paired)
    return f"AUROC {s['auroc_jepa']:.3f}  {diffs}  localisation {s['localisation'].get('hit_rate')}"


if __name__ == "__main__":
    main()

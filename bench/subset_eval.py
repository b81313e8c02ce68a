"""The partition's eval report restricted to the test problems a child version added to its parent (issue 12).

    .venv/bin/python bench/subset_eval.py --version ms3 --new-over ms2 --out bench/results/eval_ms3_new.json

Why: `ms3` is `ms2` with 328 held-out test problems added. `ms2`'s 171 test problems have been looked at for
several sessions while choosing what to try next; the added ones had never been evaluated before this
measurement, and `ms3`'s checkpoint and inference settings are fitted on ms2's train and val problems only.
So the added problems are an untouched confirmation set for the settings chosen on ms2.

How: `pipeline.run_evaluation` with `test_ids` = the version's test problems that `--new-over` lacks — the
partition's newest checkpoint, the vote temperature fitted when it was made, the same verifier and probe
(trained on the partition's train+val candidates) — into a temporary folder, so the partition's own report
stays the full test split's. Writes the report's machine-readable summary (`eval_<version>.json` format) with
the command that made it. `--inherited` scores the other part (the parent's own test problems) with the same
checkpoint, to tell a weaker retraining from harder problems.
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
from rjepa_core.eval.report import summary  # noqa: E402
from rjepa_core.io import atomic_write_json  # noqa: E402
from rjepa_core.pipeline import added_test_ids, run_evaluation  # noqa: E402
from rjepa_core.schemas import Problem, read_records  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--version", default="ms3")
    ap.add_argument("--new-over", required=True, help="parent version: evaluate only the test problems it lacks")
    ap.add_argument(
        "--inherited", action="store_true", help="the other part instead: the test problems the parent holds too"
    )
    ap.add_argument("--k", type=int, nargs="+", default=[8])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t = time.monotonic()
    layout = StorageResource().layout()
    try:
        ids = added_test_ids(layout, args.version, args.new_over)
        if args.inherited:
            every = read_records(Problem, layout.problems_path(args.version))
            ids = {p.problem_id for p in every if p.split == "test"} - ids
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    if not ids:
        raise SystemExit(f"{args.version} has no such test problems (--new-over {args.new_over})")
    with tempfile.TemporaryDirectory() as tmp:
        report, _ = run_evaluation(
            layout, args.llm, args.version, ks=tuple(args.k), bootstrap=args.bootstrap, test_ids=ids, out_dir=tmp,
            log=print,
        )  # fmt: skip
    out = {
        "benchmark": "subset_eval",
        "command": "python bench/subset_eval.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "subset": f"test problems of {args.version} that {args.new_over} {'holds too' if args.inherited else 'lacks'}",
        "checkpoint": report.get("checkpoint"),
        "wall_s": round(time.monotonic() - t, 1),
        **{f"k{k}": summary(report, k) for k in args.k},
    }
    atomic_write_json(args.out, out)
    print(f"wrote {args.out} ({len(ids)} problems)")


if __name__ == "__main__":
    main()

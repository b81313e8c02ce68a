"""Recompute the held-out `selection` block of every ablation row from its candidate dump.

    .venv/bin/python bench/reselect.py bench/results/ablations_ms2.json

`rjepa ablate` writes each variant's held-out candidate scores (`candidates_file`) beside its row; the
selection methods read nothing else, so their cross-validated accuracies can be recomputed with the current
`rjepa_core.eval.selection.cross_validated_selection` without retraining — for rows written before a method
was measured there (rows before 2026-12-07 16:00 reported the excess-surprise filter as 0). Rows whose dump
is missing are left as they are and listed. The file is rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rjepa_core.eval.selection import EvalCandidate, cross_validated_selection  # noqa: E402
from rjepa_core.io import atomic_write_json  # noqa: E402

FIELDS = ("cot_id", "problem_id", "answer", "correct", "logprob", "num_tokens", "num_steps", "jepa_loss")


def held_out_groups(path: Path) -> tuple[list[list[EvalCandidate]], list[int]]:
    """One group per problem of the dump, in file order, and each group's fold."""
    groups: dict[str, list[EvalCandidate]] = defaultdict(list)
    folds: dict[str, int] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            groups[r["problem_id"]].append(
                EvalCandidate(**{k: r[k] for k in FIELDS}, step_surprise=r.get("step_surprise"))
            )
            folds[r["problem_id"]] = int(r["fold"])
    return list(groups.values()), [folds[p] for p in groups]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", type=Path, help="bench/results/ablations_<version>.json")
    args = ap.parse_args()
    table = json.loads(args.table.read_text())
    missing = []
    for row in table["rows"]:
        path = Path(row.get("candidates_file") or "")
        path = path if path.is_absolute() else ROOT / path  # absolute as `rjepa ablate` writes it, or repo-relative
        if not row.get("candidates_file") or not path.is_file():
            missing.append(row["name"])
            continue
        row["selection"] = cross_validated_selection(*held_out_groups(path))
        row["selection_recomputed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        sel = row["selection"]
        print(f"{row['name']:<36} " + "  ".join(f"{m} {v:.3f}" for m, v in sel.items() if isinstance(v, float)))
    atomic_write_json(args.table, table)
    print(f"wrote {args.table}; rows without a dump, left as they were: {missing or 'none'}")


if __name__ == "__main__":
    main()

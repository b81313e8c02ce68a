"""Assemble the issue-17 capture measurements from two eval-modes runs and two materialized stores.

    python bench/capture_results.py nudge --captured /tmp/m-cap/modes_v1.json --forced /tmp/m-tf/modes_v1.json \
        --commands "rjepa eval-modes ..." "rjepa eval-modes ... --nudge-teacher-forced" --load "$(uptime)"
    python bench/capture_results.py eval --captured /work/store-nudge --forced /work/store-nudge-tf \
        --commands "rjepa demo" "rjepa demo --from latents --teacher-forced" --load "$(uptime)"

`nudge` → bench/results/nudge_capture_v1.json: NUDGE (and its never-nudging control, which also scores every
line) accuracy, seconds and tokens per problem with captured vs teacher-forced step latents, and the cosine of
the captured latents of the kept steps with teacher-forced ones. `eval` → bench/results/capture_eval_v1.json:
eval_report's AUROC and JEPA / majority / jepa_vote accuracies of the two stores (same chains: checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"
MODES = ("NUDGE", "NUDGE_off")  # NUDGE_off scores every line too (infinite threshold): the same latents work


def _machine(load: list[str]) -> dict:
    return {"cpus": os.cpu_count(), "uptime": load, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _nudge_side(m: dict) -> dict:
    return {
        "latents": m["nudge"].get("latents"),
        "latent_fallbacks": m["nudge"].get("latent_fallbacks"),
        "accuracy": {k: m["accuracy"][k] for k in ("NUDGE", "NUDGE_off", "OFF")},
        "seconds_per_problem": {k: m["seconds_per_problem"][k] for k in ("NUDGE", "NUDGE_off")},
        "tokens_per_problem": {k: m["mean_tokens"][k] for k in ("NUDGE", "NUDGE_off")},
        "problems_nudged": m["nudge"]["problems_nudged"],
        "mean_steps_nudged": m["nudge"]["mean_steps_nudged"],
        "wall_s": m.get("wall_s"),
    }


def nudge(args) -> dict:
    cap, tf = (json.loads(Path(p).read_text()) for p in (args.captured, args.forced))
    if cap["checkpoint"] != tf["checkpoint"] or cap["n_problems"] != tf["n_problems"]:
        raise SystemExit("the two eval-modes runs are not on the same checkpoint and problems")
    c, f = _nudge_side(cap), _nudge_side(tf)
    return {
        "what": "NUDGE with step latents captured while sampling vs re-extracted teacher-forced after every line",
        "llm": cap["llm_tag"], "dataset_version": cap["dataset_version"], "checkpoint": cap["checkpoint"],
        "n_problems": cap["n_problems"], "nudge_m": cap["nudge"]["m"],
        "captured": c, "teacher_forced": f,
        "speedup_seconds": {k: f["seconds_per_problem"][k] / c["seconds_per_problem"][k] for k in MODES},
        "capture_agreement": cap["nudge"].get("capture_agreement"),
        "commands": args.commands, "machine": _machine(args.load),
    }  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _eval_side(store: Path, llm: str, version: str) -> dict:
    rep = json.loads((store / "reports" / llm / version / "report.json").read_text())
    ks = rep.get("ks") or [rep.get("k")]
    methods = {}
    for name in ("jepa", "majority", "jepa_vote", "jepa_filter_majority", "greedy"):
        per_k = rep["methods"].get(name) or {}
        methods[name] = {
            f"k={k}": {x: per_k[f"k={k}"].get(x) for x in ("accuracy", "auroc", "auroc_within_problem")}
            for k in ks
            if f"k={k}" in per_k
        }
    return {
        "auroc_jepa": rep.get("auroc_jepa"),
        "auroc_jepa_within_problem": rep.get("auroc_jepa_within_problem"),
        "n_problems": rep.get("n_problems"),
        "checkpoint": rep.get("checkpoint"),
        "methods": methods,
    }


def evaluate(args) -> dict:
    cap, tf = Path(args.captured), Path(args.forced)
    chains = Path("chains") / args.llm / args.version
    digests = {}
    for side, store in (("captured", cap), ("teacher_forced", tf)):
        files = sorted((store / chains).glob("*.parquet"))
        digests[side] = {f.name: _digest(f) for f in files}
    if digests["captured"] != digests["teacher_forced"]:
        raise SystemExit(f"the two stores' student chains differ: {digests}")
    return {
        "what": "eval_report on latents captured while sampling vs teacher-forced extraction (same chains)",
        "llm": args.llm, "dataset_version": args.version,
        "same_chains": digests["captured"],
        "captured": _eval_side(cap, args.llm, args.version),
        "teacher_forced": _eval_side(tf, args.llm, args.version),
        "commands": args.commands, "machine": _machine(args.load),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["nudge", "eval"])
    ap.add_argument("--captured", required=True)
    ap.add_argument("--forced", required=True)
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--version", default="v1")
    ap.add_argument("--commands", nargs="+", default=[])
    ap.add_argument("--load", nargs="*", default=[], help="`uptime` lines taken around the runs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = nudge(args) if args.what == "nudge" else evaluate(args)
    name = "nudge_capture" if args.what == "nudge" else "capture_eval"
    out = Path(args.out) if args.out else OUT / f"{name}_{args.version}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    print(json.dumps(result, indent=2)[:3000])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

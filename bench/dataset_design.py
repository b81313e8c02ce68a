"""Pick reasoning-gym tasks where the student has headroom (issue 12): greedy ~20-40 %, pass@8 >= 60 %,
most chains with >= 3 steps. Samples each candidate source with the real student and writes
bench/results/dataset_design.json.

    .venv/bin/python bench/dataset_design.py --n 24 --k 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CANDIDATES = {
    "chain_sum_3x1": ("chain_sum", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}),
    "chain_sum_4x1": ("chain_sum", {"min_terms": 4, "max_terms": 4, "min_digits": 1, "max_digits": 1}),
    "chain_sum_3x2": ("chain_sum", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 2}),
    "basic_pm_3_4x1": (
        "basic_arithmetic",
        {
            "min_terms": 3,
            "max_terms": 4,
            "min_digits": 1,
            "max_digits": 1,
            "allow_parentheses": False,
            "operators": ["+", "-"],
        },
    ),
    "basic_pmt_3x1": (
        "basic_arithmetic",
        {
            "min_terms": 3,
            "max_terms": 3,
            "min_digits": 1,
            "max_digits": 1,
            "allow_parentheses": False,
            "operators": ["+", "-", "*"],
        },
    ),
}


def measure(student, name: str, task: str, params: dict, n: int, k: int, seed: int) -> dict:
    from rjepa_core.data.sources import SourceSpec, load_source
    from rjepa_core.pipeline import sample_student_chains

    problems = [
        item.problem
        for item in load_source(SourceSpec(kind="reasoning_gym", task=task, size=n, seed=seed, params=params))
    ]
    for p in problems:
        p.split = "test"  # k_test samples + one greedy chain for every problem
    t0 = time.perf_counter()
    chains = sample_student_chains(student, problems, k=k, k_test=k, seed=seed)
    seconds = time.perf_counter() - t0
    greedy = [c for c in chains if c.meta["greedy"]]
    sampled = [c for c in chains if not c.meta["greedy"]]
    by_problem: dict[str, list] = {}
    for c in sampled:
        by_problem.setdefault(c.problem_id, []).append(c)
    steps = [len(c.steps) for c in sampled]
    valid_per_problem = [sum(c.is_valid for c in cs) for cs in by_problem.values()]
    return {
        "name": name,
        "task": task,
        "params": params,
        "n_problems": len(problems),
        "k": k,
        "greedy_accuracy": sum(c.is_valid for c in greedy) / len(greedy),
        "sample_accuracy": sum(c.is_valid for c in sampled) / len(sampled),
        "pass_at_k": sum(v > 0 for v in valid_per_problem) / len(valid_per_problem),
        "mixed_groups": sum(0 < v < k for v in valid_per_problem) / len(valid_per_problem),
        "mean_steps": sum(steps) / len(steps),
        "share_ge3_steps": sum(s >= 3 for s in steps) / len(steps),
        "seconds": round(seconds, 1),
        "example": sampled[0].steps,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="problems per candidate")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--seed", type=int, default=901)
    ap.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    ap.add_argument("--out", default="bench/results/dataset_design.json")
    args = ap.parse_args(argv)

    from rjepa_core.llm.adapter import StudentLLM

    student = StudentLLM.load("smollm2-135m")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text())["candidates"] if out_path.exists() else {}
    for name, (task, params) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        r = measure(student, name, task, params, args.n, args.k, args.seed)
        results[name] = r
        print(json.dumps({k: v for k, v in r.items() if k != "example"}), flush=True)
        from rjepa_core.io import atomic_write_json

        atomic_write_json(
            out_path,
            {
                "command": "python bench/dataset_design.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "llm": "smollm2-135m",
                "candidates": results,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

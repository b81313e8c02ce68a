"""Pick reasoning-gym tasks where the student has headroom (issue 12): greedy ~20-40 %, pass@8 >= 60 %,
most chains with >= 3 steps. Samples each candidate source with the real student and writes
bench/results/dataset_design.json (one entry per candidate and prompt: "<name>" zero-shot,
"<name>+<N>shot" with N worked examples of the same task, drawn with another seed).

    .venv/bin/python bench/dataset_design.py --n 24 --k 8 --few-shot 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _arith(min_terms: int, max_terms: int, operators: list[str]) -> tuple[str, dict]:
    """basic_arithmetic with one-digit terms and no parentheses."""
    params = {"min_terms": min_terms, "max_terms": max_terms, "min_digits": 1, "max_digits": 1}
    return "basic_arithmetic", {**params, "allow_parentheses": False, "operators": operators}


def _chain_sum(terms: int, max_digits: int) -> tuple[str, dict]:
    return "chain_sum", {"min_terms": terms, "max_terms": terms, "min_digits": 1, "max_digits": max_digits}


CANDIDATES = {
    "chain_sum_3x1": _chain_sum(3, 1),
    "chain_sum_4x1": _chain_sum(4, 1),
    "chain_sum_3x2": _chain_sum(3, 2),
    "basic_pm_3_4x1": _arith(3, 4, ["+", "-"]),
    "add_4x1": _arith(4, 4, ["+"]),
    "add_4_5x1": _arith(4, 5, ["+"]),
    "pm_4x1": _arith(4, 4, ["+", "-"]),
    "basic_pmt_3x1": _arith(3, 3, ["+", "-", "*"]),
}


def measure(student, name: str, task: str, params: dict, n: int, k: int, seed: int, few_shot: int = 0) -> dict:
    from rjepa_core.data.sources import SourceSpec, load_source
    from rjepa_core.llm.prompting import Example
    from rjepa_core.pipeline import sample_student_chains

    examples = []
    if few_shot:
        shots = load_source(SourceSpec(kind="reasoning_gym", task=task, size=few_shot, seed=seed + 1, params=params))
        examples = [Example(i.problem.statement.strip(), i.gold_steps, i.problem.answer_gold) for i in shots]
    problems = [
        item.problem
        for item in load_source(SourceSpec(kind="reasoning_gym", task=task, size=n, seed=seed, params=params))
    ]
    for p in problems:
        p.split = "test"  # k_test samples + one greedy chain for every problem
    t0 = time.perf_counter()
    chains = sample_student_chains(student, problems, k=k, k_test=k, seed=seed, examples=examples)
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
        "few_shot": few_shot,
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
    ap.add_argument("--few-shot", type=int, default=0, help="worked examples in the prompt (0 = zero-shot)")
    ap.add_argument("--out", default="bench/results/dataset_design.json")
    args = ap.parse_args(argv)

    from rjepa_core.llm.adapter import StudentLLM

    student = StudentLLM.load("smollm2-135m")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text())["candidates"] if out_path.exists() else {}
    for name, (task, params) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        r = measure(student, name, task, params, args.n, args.k, args.seed, args.few_shot)
        results[name + (f"+{args.few_shot}shot" if args.few_shot else "")] = r
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

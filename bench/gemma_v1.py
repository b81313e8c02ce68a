"""Gemma-3-270M (base) as the second student on v1: its own pipeline's cost and evaluation, beside SmolLM2.

    RJEPA_STORAGE=/work/store-replay .venv/bin/rjepa demo --llm smollm2-135m --version v1
    RJEPA_STORAGE=/work/store-replay .venv/bin/dagster asset materialize -m rjepa_assets.definitions \
        --partition 'v1|gemma3-270m' -c bench/gemma_v1_run.yaml \
        --select student_chains,latents,jepa_checkpoint,latent_decoder,eval_report   # K 1 / 4: see that file
    RJEPA_STORAGE=/work/store-replay .venv/bin/python bench/gemma_v1.py --pipeline
    RJEPA_STORAGE=/work/store-replay .venv/bin/python bench/gemma_v1.py --greedy-train-val

Reads what those Dagster runs left: minutes per step (the instance's step stats of each LLM's newest
successful `llm_pipeline_job` run for `v1|<llm>`), and each LLM's own-checkpoint eval report (OFF/greedy,
majority, JEPA selection accuracies with their 95 % intervals, JEPA-loss AUROC). With `--greedy-train-val`
it also measures each student's greedy accuracy on every v1 train/val problem (never test), under the
prompt the pipeline uses (Gemma: its registry entry's three worked examples, plain text).

Writes bench/results/gemma_v1.json atomically (each part's command kept; a later invocation of one
part keeps the others' results).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLMS = ("smollm2-135m", "gemma3-270m")
# what made the runs this script reads (Gemma: 1 sampled chain per train/val problem and 4 per test problem,
# bench/gemma_v1_run.yaml, to fit the time on 2 shared cores; SmolLM2: the asset's 2 and 8)
PIPELINE_COMMANDS = {
    "smollm2-135m": "RJEPA_STORAGE=/work/store-replay nice -n 5 .venv/bin/rjepa demo --llm smollm2-135m --version v1",
    "gemma3-270m": "DAGSTER_HOME=$PWD RJEPA_STORAGE=/work/store-replay nice -n 5 .venv/bin/dagster asset materialize "
    "-m rjepa_assets.definitions --partition 'v1|gemma3-270m' -c bench/gemma_v1_run.yaml "
    "--select student_chains,latents,jepa_checkpoint,latent_decoder,eval_report",
}
METHODS = (
    "greedy",
    "majority",
    "jepa",
    "jepa_vote",
    "jepa_filter_majority",
    "jepa_last_filter_majority",
    "composite",
    "verifier",
    "probe",
    "logprob_sum",
    "logprob_mean",
    "random",
)


def step_minutes(instance, llm: str, version: str) -> dict:
    """Minutes of each pipeline step's newest successful execution for `version|llm`, and the run it ran in
    (a step re-materialized later, e.g. `latents` after a registry change, counts from its newest run)."""
    import dagster as dg
    from dagster._core.execution.stats import StepEventStatus

    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": f"{version}|{llm}"}))
    steps: dict[str, float] = {}
    where: dict[str, str] = {}
    for run in runs:  # newest first
        for st in instance.get_run_step_stats(run.run_id):
            if st.step_key in steps or st.status != StepEventStatus.SUCCESS or not (st.start_time and st.end_time):
                continue
            steps[st.step_key] = round((st.end_time - st.start_time) / 60, 2)
            where[st.step_key] = f"{run.job_name} {run.run_id[:8]}"
    if "student_chains" not in steps:
        raise SystemExit(f"no successful student_chains step for {version}|{llm}: run `rjepa demo --llm {llm}` first")
    return {"minutes_per_step": steps, "runs_per_step": where}


def own_eval(layout, llm: str, version: str) -> dict:
    report = json.loads((layout.reports_dir(llm, version) / "report.json").read_text())
    out: dict = {"n_test_problems": report.get("n_problems"), "auroc_jepa": report.get("auroc_jepa")}
    for k in report.get("ks", [report.get("k")]):
        rows = {}
        for name in METHODS:
            m = (report["methods"].get(name) or {}).get(f"k={k}")
            if m:
                rows[name] = {"accuracy": m["accuracy"], "ci95": m.get("ci95"), "auroc": m.get("auroc")}
        out[f"k={k}"] = rows
    for key in ("oracle_pass_at_k", "jepa_loss_by_correctness", "paired_vs_majority"):
        if key in report:
            out[key] = report[key]
    return out


def greedy_train_val(llm_tag: str, problems, batch: int = 32) -> dict:
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.prompting import examples_of
    from rjepa_core.validators.math import answers_equal

    llm = StudentLLM.load(llm_tag)
    examples = examples_of(problems)
    rows = [p for p in problems if p.split in ("train", "val") and not p.train_only]
    tic = time.monotonic()
    right = {"train": 0, "val": 0}
    parsed = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        gens = llm.generate(
            [llm.prompt_for(p.statement, examples) for p in chunk], k=1, temperature=0.0, max_new_tokens=80
        )
        for p, (g,) in zip(chunk, gens, strict=True):
            parsed += bool(g.final_answer) and bool(g.steps)
            right[p.split] += bool(g.final_answer) and answers_equal(g.final_answer, p.answer_gold)
    n = {s: sum(p.split == s for p in rows) for s in right}
    return {
        "n": n,
        "accuracy": {s: round(right[s] / n[s], 4) for s in right if n[s]},
        "accuracy_train_val": round(sum(right.values()) / len(rows), 4),
        "parsed_steps_and_answer": round(parsed / len(rows), 4),
        "seconds": round(time.monotonic() - tic, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default="v1")
    ap.add_argument("--pipeline", action="store_true", help="read both LLMs' Dagster runs and eval reports")
    ap.add_argument("--greedy-train-val", action="store_true", help="measure greedy accuracy on train/val")
    ap.add_argument("--llms", nargs="*", default=list(LLMS), choices=LLMS, help="students to measure")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gemma_v1.json"))
    args = ap.parse_args(argv)

    os.chdir(ROOT)
    os.environ.setdefault("DAGSTER_HOME", str(ROOT))
    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.io import atomic_write_text
    from rjepa_core.llm.registry import load_registry
    from rjepa_core.schemas import Problem, read_records

    out = Path(args.out)
    # each part (pipeline, greedy, layers) may be measured by its own invocation: keep the others' results
    result: dict = json.loads(out.read_text()) if out.exists() else {"llms": {}}
    command = f"RJEPA_STORAGE={os.environ.get('RJEPA_STORAGE', '')} .venv/bin/python bench/gemma_v1.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    layout = StorageResource().layout()
    registry = load_registry()
    result.update(
        {
            "pipeline_commands": PIPELINE_COMMANDS,
            "storage": layout.uri,
            "version": args.version,
            "machine": {"cpus": os.cpu_count(), "note": "2 cores shared with two other agents' jobs"},
        }
    )
    result.setdefault("commands", {})
    problems = read_records(Problem, layout.problems_path(args.version))
    for tag in args.llms:
        spec = registry[tag]
        row = result["llms"].setdefault(tag, {})
        row.update(
            {
                "source": spec.source,
                "layer_idx": spec.layer_idx,
                "hidden_size": spec.hidden_size,
                "prompt_format": spec.prompt_format,
                "registry_few_shot": len(spec.few_shot),
            }
        )
        if args.pipeline:
            import dagster as dg

            instance = dg.DagsterInstance.get()
            row.update(step_minutes(instance, tag, args.version))
            row["own_checkpoint_eval"] = own_eval(layout, tag, args.version)
            result["commands"]["pipeline"] = command
        if args.greedy_train_val:
            row["greedy_train_val"] = greedy_train_val(tag, problems)
            row["greedy_train_val"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
            result["commands"]["greedy_train_val"] = command
            print(f"[gemma_v1] {tag} greedy train/val: {row['greedy_train_val']['accuracy']}", flush=True)
    result["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"[gemma_v1] wrote {out}")


if __name__ == "__main__":
    main()

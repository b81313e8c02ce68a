"""Gemma-3-270M (base) as the second student on v1: its own pipeline's cost and evaluation, beside SmolLM2.

    RJEPA_STORAGE=/work/store-replay .venv/bin/rjepa demo --llm smollm2-135m --version v1
    RJEPA_STORAGE=/work/store-replay .venv/bin/dagster asset materialize -m rjepa_assets.definitions \
        --partition 'v1|gemma3-270m' -c bench/gemma_v1_run.yaml \
        --select student_chains,latents,jepa_checkpoint,latent_decoder,eval_report   # K 1 / 4: see that file
    RJEPA_STORAGE=/work/store-replay .venv/bin/python bench/gemma_v1.py --pipeline
    RJEPA_STORAGE=/work/store-replay .venv/bin/python bench/gemma_v1.py --greedy-train-val
    RJEPA_STORAGE=/work/store-replay .venv/bin/python bench/gemma_v1.py --layers 4 9 13 16

Reads what those Dagster runs left: minutes per step (the instance's step stats of each LLM's newest
successful `llm_pipeline_job` run for `v1|<llm>`), and each LLM's own-checkpoint eval report (OFF/greedy,
majority, JEPA selection accuracies with their 95 % intervals, JEPA-loss AUROC). Optionally measures,
on train/val problems only (never test):

- `--greedy-train-val`: greedy accuracy of each student on every v1 train/val problem, under the prompt
  the pipeline uses (Gemma: its registry entry's three worked examples, plain text);
- `--layers L ...`: for Gemma, which layer separates its correct from its incorrect sampled train/val
  chains — a linear probe (logistic regression on the chain's mean step latent at that layer), AUROC of
  its held-out predictions in 5 folds grouped by problem. A cheap proxy for the layer choice, not the
  JEPA-loss AUROC itself.

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

import numpy as np

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
METHODS = ("greedy", "majority", "jepa", "jepa_vote", "jepa_filter_majority", "composite", "logprob_mean", "random")


def step_minutes(instance, llm: str, version: str) -> dict:
    """Minutes per step of the newest successful llm_pipeline_job run of `version|llm`."""
    import dagster as dg

    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name="llm_pipeline_job",
            tags={"dagster/partition": f"{version}|{llm}"},
            statuses=[dg.DagsterRunStatus.SUCCESS],
        ),
        limit=1,
    )
    if not runs:
        raise SystemExit(f"no successful llm_pipeline_job run for {version}|{llm}: run `rjepa demo --llm {llm}` first")
    run = runs[0]
    stats = instance.get_run_step_stats(run.run_id)
    steps = {s.step_key: round((s.end_time - s.start_time) / 60, 2) for s in stats if s.end_time and s.start_time}
    record = instance.get_run_record_by_id(run.run_id)
    wall = (record.end_time - record.start_time) / 60 if record.end_time and record.start_time else None
    return {"run_id": run.run_id, "minutes_per_step": steps, "run_minutes": round(wall, 2) if wall else None}


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


def layer_probe(llm_tag: str, layout, version: str, layers: list[int], folds: int = 5) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.prompting import examples_of
    from rjepa_core.schemas import ChainOfThought, Problem, read_records

    problems = {p.problem_id: p for p in read_records(Problem, layout.problems_path(version))}
    examples = examples_of(problems.values())
    chains = [
        c
        for c in read_records(ChainOfThought, layout.student_chains_path(llm_tag, version))
        if problems[c.problem_id].split in ("train", "val") and not c.meta.get("greedy")
    ]
    y = np.array([int(c.is_valid) for c in chains])
    groups = np.array([c.problem_id for c in chains])
    llm = StudentLLM.load(llm_tag)
    items = [(llm.prompt_for(problems[c.problem_id].statement, examples), c.steps) for c in chains]
    out: dict = {"n_chains": len(chains), "n_correct": int(y.sum()), "folds": folds, "auroc": {}, "seconds": {}}
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    for layer in layers:
        tic = time.monotonic()
        X = np.stack([e.H.astype(np.float32).mean(0) for e in llm.extract(items, layer_idx=layer)])  # (N, 640)
        pred = np.zeros(len(y))
        for train, held in cv.split(X, y, groups):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
            model.fit(X[train], y[train])
            pred[held] = model.predict_proba(X[held])[:, 1]
        out["auroc"][str(layer)] = round(float(roc_auc_score(y, pred)), 4)
        out["seconds"][str(layer)] = round(time.monotonic() - tic, 1)
        print(f"[gemma_v1] layer {layer}: probe AUROC {out['auroc'][str(layer)]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default="v1")
    ap.add_argument("--pipeline", action="store_true", help="read both LLMs' Dagster runs and eval reports")
    ap.add_argument("--greedy-train-val", action="store_true", help="measure greedy accuracy on train/val")
    ap.add_argument("--layers", nargs="*", type=int, default=[], help="Gemma layers for the linear-probe study")
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
    if args.layers:
        probe = layer_probe("gemma3-270m", layout, args.version, args.layers)
        result["llms"]["gemma3-270m"]["layer_probe"] = probe
        result["commands"]["layer_probe"] = command
    result["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"[gemma_v1] wrote {out}")


if __name__ == "__main__":
    main()

"""Real Dagster materializations of the whole pipeline on a tiny random student (seconds, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from rjepa_assets.defs.partitions import multi_key
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import read_latest_checkpoint
from tests.assets.conftest import FAST_RUN_CONFIG


def run_pipeline(defs, instance, version="v1", tag="tiny"):
    instance.add_dynamic_partitions("dataset_version", [version])
    if tag not in instance.get_dynamic_partitions("llm"):
        instance.add_dynamic_partitions("llm", [tag])
    r1 = defs.resolve_job_def("dataset_job").execute_in_process(partition_key=version, instance=instance)
    r2 = defs.resolve_job_def("llm_pipeline_job").execute_in_process(
        partition_key=multi_key(version, tag), instance=instance, run_config=FAST_RUN_CONFIG
    )
    return r1, r2


def test_pipeline_materializes_end_to_end(defs, project, instance):
    from tests.assets.conftest import V1, write_yaml

    _, configs, store = project
    write_yaml(configs / "datasets" / "v1.yaml", {**V1, "few_shot": 1})  # the student sees one worked example
    r1, r2 = run_pipeline(defs, instance)
    assert r1.success and r2.success
    layout = StorageLayout(store)
    problems = read_records(Problem, layout.problems_path("v1"))
    assert len(problems) >= 10 and {p.split for p in problems} <= {"train", "val", "test"}
    chains = read_records(ChainOfThought, layout.student_chains_path("tiny", "v1"))
    test_ids = {p.problem_id for p in problems if p.split == "test"}
    sampled_test = [c for c in chains if c.problem_id in test_ids and not c.meta["greedy"]]
    assert len(sampled_test) == 3 * len(test_ids)  # k_test candidates per test problem
    seqs = LatentStore(layout).read("tiny", "v1")
    assert {s.hidden_size for s in seqs} == {64} and len(seqs) >= len(chains)
    assert {c.meta["few_shot"] for c in chains} == {1}
    pointer = read_latest_checkpoint(layout, "tiny")
    assert pointer["dataset_version"] == "v1"
    # the checkpoint carries what the service needs to ask and score as the pipeline did
    meta = json.loads((Path(pointer["path"]) / "meta.json").read_text())
    example = next(p for p in problems if "few_shot_rank" in p.meta)
    assert example.split == "train" and meta["prompt"]["few_shot"][0]["statement"] == example.statement.strip()
    assert meta["jepa_vote"]["tau_rel"] > 0 and meta["surprise_norm"]["n_chains"] > 0
    assert meta["nudge"]["n_steps"] > 0 and meta["nudge"]["overall"] > 0 and meta["nudge"]["quantile"] == 0.9
    report = json.loads((layout.reports_dir("tiny", "v1") / "report.json").read_text())
    assert report["llm_tag"] == "tiny" and "jepa" in report["methods"]
    assert report["jepa_vote"]["tau_rel"] == meta["jepa_vote"]["tau_rel"]

    # what the UI shows: materializations with metadata, and asset check results
    mat = instance.get_latest_materialization_event(dg.AssetKey("jepa_checkpoint")).asset_materialization
    assert mat.partition == "v1|tiny"
    assert {"run_id", "best_val_loss", "std_preds", "loss_curves"} <= set(mat.metadata)
    dec = instance.get_latest_materialization_event(dg.AssetKey("latent_decoder")).asset_materialization
    assert dec.partition == "v1|tiny"
    assert {"token_accuracy", "exact_match", "numeric_accuracy", "baselines", "predicted_steps_decoded"} <= set(
        dec.metadata
    )
    assert 0.0 <= dec.metadata["token_accuracy"].value <= 1.0
    assert dec.metadata["predicted_steps_decoded"].value > 0  # the checkpoint's predictions were decoded
    saved = json.loads((layout.decoder_dir("tiny", "v1") / "decoder.json").read_text())
    assert saved["checkpoint"] and saved["latent_dim"] == 64 and saved["pooling"] == "mean"
    checks = {e.check_name: e.passed for e in r2.get_asset_check_evaluations()}
    assert "decoder_reads_the_latent" in checks  # 60 steps on a random student: its verdict is not asserted
    assert checks["latents_finite_and_registered_width"] is True
    assert checks["checkpoint_not_collapsed"] is True
    assert "rerank_not_worse_than_off" in checks

    # the four modes side by side on the materialized partition (two test problems), through modes_job
    modes_cfg = {"ops": {"modes_report": {"config": {"k": 3, "limit": 2, "max_new_tokens": 12, "bootstrap": 50}}}}
    r3 = defs.resolve_job_def("modes_job").execute_in_process(
        partition_key=multi_key("v1", "tiny"), instance=instance, run_config=modes_cfg
    )
    assert r3.success
    modes = json.loads((layout.reports_dir("tiny", "v1") / "modes.json").read_text())
    assert modes["n_problems"] == 2 and modes["checkpoint"] == str(Path(pointer["path"]))
    assert set(modes["accuracy"]) == {"OFF", "RERANK:jepa_vote", "RERANK:jepa_filter_majority", "RERANK:jepa",
                                      "RERANK:majority", "NUDGE", "NUDGE_off", "PLAN", "PLAN:student"}  # fmt: skip
    greedy = {c.problem_id: c.is_valid for c in chains if c.meta["greedy"]}
    first_two = [p.problem_id for p in problems if p.split == "test" and p.problem_id in greedy][:2]
    assert modes["accuracy"]["OFF"] == sum(greedy[i] for i in first_two) / 2  # OFF is the pipeline's greedy chain
    assert modes["mean_tokens"]["RERANK:jepa_vote"] >= modes["mean_tokens"]["OFF"]
    assert set(modes["vs_off"]) == set(modes["accuracy"]) - {"OFF"}
    # NUDGE scored the latents captured while sampling; with steps kept, their agreement with teacher-forced ones
    assert modes["nudge"]["latents"] == "captured" and modes["nudge"]["latent_fallbacks"] == 0
    agreement = modes["nudge"]["capture_agreement"]
    assert agreement is None or (agreement["n_steps"] > 0 and -1 <= agreement["min"] <= agreement["mean"] <= 1)
    # the eval report of the same checkpoint now has the NUDGE and PLAN rows
    md = (layout.reports_dir("tiny", "v1") / "report.md").read_text()
    assert "## Inference modes" in md and "| NUDGE |" in md and "| PLAN |" in md
    summary = json.loads((layout.reports_dir("tiny", "v1") / "eval_v1.json").read_text())
    assert set(summary["modes"]["accuracy"]) == set(modes["accuracy"])
    mat = instance.get_latest_materialization_event(dg.AssetKey("modes_report")).asset_materialization
    assert {"modes", "nudge_accuracy", "plan_accuracy", "off_accuracy"} <= set(mat.metadata)

    # the report on a subset of the test problems (bench/subset_eval.py) goes elsewhere: the partition's stays
    from rjepa_core.eval.report import summary as summary_of
    from rjepa_core.pipeline import run_evaluation

    before = (layout.reports_dir("tiny", "v1") / "report.json").read_bytes()
    sub, paths = run_evaluation(
        layout, "tiny", "v1", ks=(3,), bootstrap=50, test_ids=set(first_two), out_dir=store / "subset"
    )
    assert summary_of(sub, 3)["n_problems"] == 2 and "modes" not in sub
    assert sub["n_candidates"] == 2 * 3  # the two problems' k_test candidates, nothing else
    assert paths["json"].parent == store / "subset"
    assert (layout.reports_dir("tiny", "v1") / "report.json").read_bytes() == before
    with pytest.raises(ValueError, match="no test problems to evaluate"):
        run_evaluation(layout, "tiny", "v1", ks=(3,), test_ids={"not-a-problem"}, out_dir=store / "subset")


def test_cumulative_version_and_new_llm_backfill(defs, project, instance):
    """v2 extends v1; a new registry entry is picked up by the sensor and its runs complete."""
    from rjepa_assets.defs.automation.sensors import llm_registry_sensor
    from tests.assets.conftest import V2, write_yaml

    resources, configs, store = project
    write_yaml(configs / "datasets" / "v2.yaml", V2)
    instance.add_dynamic_partitions("dataset_version", ["v1", "v2"])
    for v in ("v1", "v2"):
        assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key=v, instance=instance).success
    layout = StorageLayout(store)
    p1 = {p.problem_id for p in read_records(Problem, layout.problems_path("v1"))}
    p2 = {p.problem_id for p in read_records(Problem, layout.problems_path("v2"))}
    assert p1 < p2
    manifest = json.loads(layout.manifest_path("v2").read_text())
    assert manifest["parent"] == "v1" and manifest["num_problems"] == len(p2)

    # the sensor sees `tiny` as new and requests one run per dataset version: run them (the backfill)
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    result = llm_registry_sensor(ctx)
    instance.add_dynamic_partitions("llm", list(result.dynamic_partitions_requests[0].partition_keys))
    from tests.assets.conftest import FAST_RUN_CONFIG

    for req in result.run_requests:
        run = defs.resolve_job_def("llm_pipeline_job").execute_in_process(
            partition_key=req.partition_key, instance=instance, run_config=FAST_RUN_CONFIG, tags=req.tags
        )
        assert run.success
    assert {m for m in instance.get_materialized_partitions(dg.AssetKey("eval_report"))} == {"v1|tiny", "v2|tiny"}

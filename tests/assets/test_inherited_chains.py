"""A child version's `student_chains` inherits the parent's chains and their captured latents and samples only
its new problems (real Dagster runs on the tiny student; v2 extends v1 in the test project)."""

from __future__ import annotations

import dagster as dg
import numpy as np

from rjepa_assets.defs.partitions import multi_key
from rjepa_core.captured import read_manifest
from rjepa_core.pipeline import added_test_ids
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.assets.conftest import V2, write_yaml
from tests.assets.test_captured_latents import CHAINS, TokenCounter

V2_TEST = {**V2, "sources": [{**V2["sources"][0], "split": "test"}]}  # new problems held out for test


def _chains(defs, instance, version: str, config: dict) -> dg.MaterializeResult:
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey("student_chains")})
    res = job.execute_in_process(
        partition_key=multi_key(version, "tiny"),
        instance=instance,
        run_config={"ops": {"student_chains": {"config": config}}},
        raise_on_error=False,
    )
    assert res.success, [e.event_specific_data for e in res.all_events if e.is_failure]
    return instance.get_latest_materialization_event(dg.AssetKey("student_chains")).asset_materialization.metadata


def _datasets(defs, project, instance, *versions: str) -> StorageLayout:
    resources, configs, store_root = project
    write_yaml(configs / "datasets" / "v2.yaml", V2_TEST)
    instance.add_dynamic_partitions("dataset_version", list(versions))
    instance.add_dynamic_partitions("llm", ["tiny"])
    for v in versions:
        assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key=v, instance=instance).success
    return StorageLayout(store_root)


def test_the_child_samples_only_its_new_problems_and_stages_the_parents_captured_latents(defs, project, instance):
    layout = _datasets(defs, project, instance, "v1", "v2")
    _chains(defs, instance, "v1", CHAINS)
    parent = {c.cot_id: c for c in read_records(ChainOfThought, layout.student_chains_path("tiny", "v1"))}
    student = project[0]["student_llm"].load("tiny")
    with TokenCounter(student.model) as child_run:
        meta = _chains(defs, instance, "v2", CHAINS)
    child = read_records(ChainOfThought, layout.student_chains_path("tiny", "v2"))
    old = {p.problem_id for p in read_records(Problem, layout.problems_path("v1"))}
    new = {p.problem_id for p in read_records(Problem, layout.problems_path("v2"))} - old
    assert new and {c.problem_id for c in child} == old | new
    assert added_test_ids(layout, "v2", "v1") == new  # all held out for test: what bench/subset_eval.py scores
    kept = [c for c in child if c.problem_id in old]
    assert {c.cot_id: (c.steps, c.meta["text"], c.is_valid) for c in kept} == {
        i: (c.steps, c.meta["text"], c.is_valid) for i, c in parent.items()
    }
    report = meta["inherited"].value
    assert report["inherited_problems"] == len(old) and report["inherited_chains"] == len(parent)
    assert report["resampled_problems"] == {} and report["unchecked"] == []
    # the run generated for the new problems only: K=3 + greedy per new test problem, far fewer than all
    with TokenCounter(student.model) as all_over:
        _chains(defs, instance, "v2", {**CHAINS, "inherit": False})
    assert 0 < child_run.tokens < all_over.tokens / 2

    # the parent's captured latents reach the child's staged set, so `latents` commits them with no forward
    _chains(defs, instance, "v2", CHAINS)
    staged = read_manifest(layout, "tiny", "v2")["chains"]
    captured_v1 = read_manifest(layout, "tiny", "v1")["chains"]
    assert set(captured_v1) <= set(staged)
    root = layout.student_chains_path("tiny", "v1").parent / "captured"
    v1_seqs = {s.cot_id: s for s in LatentStore(StorageLayout(root)).read("tiny", "v1")}
    root2 = layout.student_chains_path("tiny", "v2").parent / "captured"
    v2_seqs = {s.cot_id: s for s in LatentStore(StorageLayout(root2)).read("tiny", "v2")}
    for cot_id, s in v1_seqs.items():
        assert np.array_equal(v2_seqs[cot_id].H, s.H)


def test_a_changed_sampling_setting_samples_the_parents_problems_again(defs, project, instance):
    layout = _datasets(defs, project, instance, "v1", "v2")
    _chains(defs, instance, "v1", CHAINS)
    sampled = {c.problem_id for c in read_records(ChainOfThought, layout.student_chains_path("tiny", "v1"))}
    report = _chains(defs, instance, "v2", {**CHAINS, "temperature": 1.0})["inherited"].value
    assert report["inherited_problems"] == 0 and report["resampled_problems"] == {"temperature": len(sampled)}
    child = read_records(ChainOfThought, layout.student_chains_path("tiny", "v2"))
    assert {c.meta["temperature"] for c in child} == {0.0, 1.0}

"""A child version's `student_chains` inherits the parent's chains and their captured latents and samples only
its new problems (real Dagster runs on the tiny student; v2 extends v1 in the test project)."""

from __future__ import annotations

import dataclasses

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


def _latents(defs, instance, version: str, config: dict | None = None):
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey("latents")})
    res = job.execute_in_process(
        partition_key=multi_key(version, "tiny"),
        instance=instance,
        run_config={"ops": {"latents": {"config": config or {}}}},
        raise_on_error=False,
    )
    assert res.success, [e.event_specific_data for e in res.all_events if e.is_failure]
    return instance.get_latest_materialization_event(dg.AssetKey("latents")).asset_materialization.metadata


def test_the_child_commits_the_parents_latents_and_forwards_only_its_new_chains(defs, project, instance):
    from rjepa_core.pipeline import extract_latents

    layout = _datasets(defs, project, instance, "v1", "v2")
    _chains(defs, instance, "v1", CHAINS)
    _latents(defs, instance, "v1")
    _chains(defs, instance, "v2", CHAINS)
    v1 = {s.cot_id: s for s in LatentStore(layout).read("tiny", "v1")}
    problems = read_records(Problem, layout.problems_path("v2"))
    cots = read_records(ChainOfThought, layout.cots_path("v2"))
    cots += read_records(ChainOfThought, layout.student_chains_path("tiny", "v2"))
    staged = set(read_manifest(layout, "tiny", "v2")["chains"])  # captured while sampling (or inherited so)
    from_parent = [c for c in cots if c.cot_id in v1 and c.cot_id not in staged]  # gold + empty-text chains
    forced = [c for c in cots if c.cot_id not in v1 and c.cot_id not in staged]  # v2's new gold chains
    assert from_parent and forced
    student = project[0]["student_llm"].load("tiny")
    with TokenCounter(student.model) as expected:
        extract_latents(student, problems, forced)
    with TokenCounter(student.model) as run:
        meta = _latents(defs, instance, "v2")
    assert run.tokens == expected.tokens  # nothing the parent extracted runs through the student again
    assert meta["inherited_sequences"].value == len(from_parent)
    assert meta["teacher_forced_sequences"].value == len(forced)
    v2 = {s.cot_id: s for s in LatentStore(layout).read("tiny", "v2")}
    split = {p.problem_id: p.split for p in problems}
    for c in from_parent:
        assert np.array_equal(v2[c.cot_id].H, v1[c.cot_id].H) and v2[c.cot_id].split == split[c.problem_id]

    # teacher-forced on demand reuses nothing, the parent's latents included
    meta = _latents(defs, instance, "v2", {"teacher_forced": True})
    assert meta["inherited_sequences"].value == 0 and meta["teacher_forced_sequences"].value == len(cots)


def test_a_latent_key_changes_with_the_statement_the_examples_and_the_registry_entry(project):
    from rjepa_core.data.datasets import DatasetConfig, build_problems
    from rjepa_core.data.sources import SourceSpec
    from rjepa_core.llm.inherit import latent_keys
    from rjepa_core.llm.prompting import RANK_KEY
    from rjepa_core.pipeline import sample_student_chains

    resources = project[0]
    spec = resources["student_llm"].spec("tiny")

    cfg = DatasetConfig(
        version="k", sources=[SourceSpec(kind="reasoning_gym", task="chain_sum", size=8, seed=4)], few_shot=1
    )
    problems = build_problems(cfg, [])
    cots = sample_student_chains(resources["student_llm"].load("tiny"), problems, k=1, k_test=1, max_new_tokens=4)
    keys = latent_keys(spec, problems, cots)
    assert len(keys) == len(cots) and keys == latent_keys(spec, [p.model_copy() for p in problems], cots)
    target = next(p for p in problems if RANK_KEY not in p.meta)
    worded = [p.model_copy(update={"statement": p.statement + " "}) if p is target else p for p in problems]
    changed = {i for i, k in latent_keys(spec, worded, cots).items() if k != keys[i]}
    assert changed == {c.cot_id for c in cots if c.problem_id == target.problem_id}
    example = next(p for p in problems if RANK_KEY in p.meta)
    no_examples = [p.model_copy(update={"meta": {}}) if p is example else p for p in problems]
    assert all(k != keys[i] for i, k in latent_keys(spec, no_examples, cots).items())
    other = dataclasses.replace(spec, layer_idx=1)
    assert all(k != keys[i] for i, k in latent_keys(other, problems, cots).items())

"""`student_chains` captures its chains' latents while sampling and `latents` commits them with no second
forward (rjepa_core.captured), in real Dagster runs on the tiny student; teacher-forced stays an option."""

from __future__ import annotations

import dagster as dg
import numpy as np

from rjepa_assets.defs.partitions import multi_key
from rjepa_assets.defs.resources import StudentLLMResource
from rjepa_core.captured import read_manifest
from rjepa_core.pipeline import extract_latents
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout

KEY = multi_key("v1", "tiny")
CHAINS = {"k": 2, "k_test": 3, "max_new_tokens": 12}


def _run(defs, instance, assets: set[str], ops: dict) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    res = job.execute_in_process(partition_key=KEY, instance=instance, run_config={"ops": ops}, raise_on_error=False)
    assert res.success, [e.event_specific_data for e in res.all_events if e.is_failure]
    return res


class TokenCounter:
    """Counts the tokens every forward of the student's model runs (a pre-hook on the real model)."""

    def __init__(self, model) -> None:
        self.model, self.tokens = model, 0

    def __enter__(self) -> TokenCounter:
        self.handle = self.model.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _count(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel())


def _latest(instance, asset: str):
    return instance.get_latest_materialization_event(dg.AssetKey(asset)).asset_materialization.metadata


def test_latents_commits_captured_student_latents_and_forwards_only_the_gold_chains(defs, project, instance):
    resources, _, store_root = project
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success
    layout = StorageLayout(store_root)
    _run(defs, instance, {"student_chains"}, {"student_chains": {"config": CHAINS}})
    chains = read_records(ChainOfThought, layout.student_chains_path("tiny", "v1"))
    gold = read_records(ChainOfThought, layout.cots_path("v1"))
    problems = read_records(Problem, layout.problems_path("v1"))
    # a chain with no text (the "(empty)" placeholder step) has no generated token to pool: teacher-forced
    written = [c for c in chains if c.meta["text"].strip()]
    forced_too = [c for c in chains if not c.meta["text"].strip()]
    assert len(written) >= 30 and _latest(instance, "student_chains")["captured_latents"].value == len(written)
    assert set(read_manifest(layout, "tiny", "v1")["chains"]) == {c.cot_id for c in written}

    student = resources["student_llm"].load("tiny")  # the very instance the runs use (one load per process)
    assert student is StudentLLMResource(registry_dir=resources["student_llm"].registry_dir, device="cpu").load("tiny")
    with TokenCounter(student.model) as gold_only:
        extract_latents(student, problems, gold + forced_too)
    with TokenCounter(student.model) as run:
        _run(defs, instance, {"latents"}, {})
    assert gold_only.tokens > 0 and run.tokens == gold_only.tokens  # no forward over any student chain
    meta = _latest(instance, "latents")
    assert meta["captured_sequences"].value == len(written)
    assert meta["teacher_forced_sequences"].value == len(gold) + len(forced_too)
    staged = {
        s.cot_id: s
        for s in LatentStore(StorageLayout(layout.student_chains_path("tiny", "v1").parent / "captured")).read(
            "tiny", "v1"
        )
    }
    captured = {s.cot_id: s for s in LatentStore(layout).read("tiny", "v1") if s.cot_id in staged}
    assert set(captured) == {c.cot_id for c in written}
    for cot_id, s in captured.items():  # committed as captured, bit for bit
        assert np.array_equal(s.H, staged[cot_id].H) and s.token_ids == staged[cot_id].token_ids

    # teacher-forced on demand: a forward over every chain again
    with TokenCounter(student.model) as forced:
        _run(defs, instance, {"latents"}, {"latents": {"config": {"teacher_forced": True}}})
    assert forced.tokens > run.tokens
    assert _latest(instance, "latents")["captured_sequences"].value == 0
    tf = {s.cot_id: s for s in LatentStore(layout).read("tiny", "v1") if s.cot_id in captured}
    assert set(tf) == set(captured)
    for cot_id, s in captured.items():
        assert s.H.shape == tf[cot_id].H.shape and s.H.dtype == np.float16
        assert s.is_valid == next(c.is_valid for c in chains if c.cot_id == cot_id)

    # re-sampled without capture: the staged latents are gone, and `latents` teacher-forces everything
    _run(defs, instance, {"student_chains"}, {"student_chains": {"config": {**CHAINS, "capture_latents": False}}})
    assert read_manifest(layout, "tiny", "v1") is None
    with TokenCounter(student.model) as again:
        _run(defs, instance, {"latents"}, {})
    assert again.tokens == forced.tokens and _latest(instance, "latents")["captured_sequences"].value == 0


def test_staged_latents_of_a_changed_chain_are_never_committed(defs, project, instance):
    """Same cot_ids, new text (re-sampled at another temperature): only fingerprint-matching latents are reused."""
    from rjepa_core.captured import usable_captured

    resources, _, store_root = project
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success
    layout = StorageLayout(store_root)
    _run(defs, instance, {"student_chains"}, {"student_chains": {"config": CHAINS}})
    chains = [c for c in read_records(ChainOfThought, layout.student_chains_path("tiny", "v1")) if c.meta["text"]]
    spec = resources["student_llm"].spec("tiny")
    from rjepa_core.captured import settings_of

    assert len(usable_captured(layout, "tiny", "v1", chains, settings_of(spec))) == len(chains)
    changed = [c.model_copy(update={"steps": [*c.steps, "extra"]}) if i % 2 else c for i, c in enumerate(chains)]
    reuse = usable_captured(layout, "tiny", "v1", changed, settings_of(spec))
    assert set(reuse) == {c.cot_id for i, c in enumerate(chains) if not i % 2}
    assert usable_captured(layout, "tiny", "v1", chains, settings_of(spec, pooling="last")) == {}


def test_deleting_a_users_contributions_reaches_the_staged_latents(defs, project, instance):
    from rjepa_core.captured import captured_root
    from rjepa_core.learning.forget import purge_derived

    _, _, store_root = project
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success
    layout = StorageLayout(store_root)
    _run(defs, instance, {"student_chains"}, {"student_chains": {"config": CHAINS}})
    before = read_manifest(layout, "tiny", "v1")["chains"]
    chains = read_records(ChainOfThought, layout.student_chains_path("tiny", "v1"))
    victim = next(c.problem_id for c in chains if c.cot_id in before)
    removed = {c.cot_id for c in chains if c.problem_id == victim and c.cot_id in before}
    out = purge_derived(layout, "v1", problem_ids={victim})
    assert out["tiny"]["captured_latents"] == len(removed) > 0
    after = read_manifest(layout, "tiny", "v1")["chains"]
    assert set(after) == set(before) - removed
    staged = LatentStore(StorageLayout(captured_root(layout, "tiny", "v1"))).read("tiny", "v1")
    assert {s.cot_id for s in staged} == set(after) and all(s.problem_id != victim for s in staged)

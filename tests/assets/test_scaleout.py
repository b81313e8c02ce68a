"""Scale-out through the assets (SPEC F19): `latents` extracted by parallel shard workers, and
`jepa_checkpoint` trained on two torchrun processes — each against the default one-process path, on
the same partition, in real Dagster runs with real subprocesses.

Tolerances. Latents: every shard's chains are batched exactly as in one process (see
`rjepa_core.llm.sharded`), so they come out bit-identical here (measured, threads 1 and 2); the test
allows one float16 step (relative 2**-10) because a worker's BLAS may order its float32 sums
differently from the run's process on another machine, and a wrong chain-to-shard assignment or a
missing shard is caught exactly by the cot_id order and counts. Training: 1e-4 on each step's loss, as
in tests/core/jepa/test_ddp.py (measured there: 2.4e-7).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np

from rjepa_assets.defs.partitions import multi_key
from rjepa_assets.defs.resources import TrainingResource
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.conftest import TEST_THREADS

KEY = multi_key("v1", "tiny")
CHAINS_CONFIG = {"config": {"k": 2, "k_test": 3, "max_new_tokens": 12}}


def _run(defs, instance, assets: set[str], ops: dict) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    res = job.execute_in_process(partition_key=KEY, instance=instance, run_config={"ops": ops}, raise_on_error=False)
    assert res.success, [e.event_specific_data for e in res.all_events if e.is_failure]
    return res


def _prepare(defs, instance) -> None:
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success


def _messages(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_parallel_shard_workers_give_the_one_process_latents(defs, project, instance):
    _prepare(defs, instance)
    shard = {"shard_size": 8}
    _run(defs, instance, {"student_chains", "latents"}, {"student_chains": CHAINS_CONFIG, "latents": {"config": shard}})
    layout = StorageLayout(project[2])
    store = LatentStore(layout)
    one = store.read("tiny", "v1")
    shards_one = [p.name for p in store.iter_shards("tiny", "v1")]
    assert len(shards_one) >= 4  # enough shards for two workers with two or more each

    parallel = {**shard, "workers": 2, "worker_threads": TEST_THREADS}
    res = _run(defs, instance, {"latents"}, {"latents": {"config": parallel}})
    two = store.read("tiny", "v1")
    assert [p.name for p in store.iter_shards("tiny", "v1")] == shards_one
    assert [s.cot_id for s in two] == [s.cot_id for s in one]
    for a, b in zip(one, two, strict=True):
        assert a.H.shape == b.H.shape and a.step_spans == b.step_spans and a.token_ids == b.token_ids
        np.testing.assert_allclose(b.H.astype(np.float32), a.H.astype(np.float32), rtol=2**-10, atol=1e-6)
        assert (a.Q is None) == (b.Q is None)
        if a.Q is not None:
            np.testing.assert_allclose(b.Q.astype(np.float32), a.Q.astype(np.float32), rtol=2**-10, atol=1e-6)
    assert store.verify("tiny", "v1") == []
    # both workers ran and reported through the run's logs; no staging folder is left beside the set
    msgs = _messages(instance, res.run_id)
    assert any("[shards 0:" in m for m in msgs) and sum("committed" in m and "[shards" in m for m in msgs) == len(
        shards_one
    )
    assert not [p.name for p in layout.latents_dir("tiny", "v1").parent.iterdir() if ".shards-" in p.name]
    mat = instance.get_latest_materialization_event(dg.AssetKey("latents")).asset_materialization
    assert mat.metadata["extraction_workers"].value == 2 and mat.metadata["num_shards"].value == len(shards_one)


def _shard_job():
    """The job as a step subprocess rebuilds it: default resources, pointed at the test project by env."""
    from rjepa_assets.definitions import build_defs

    return build_defs().resolve_job_def("latents_by_shard_job")


def test_latents_by_shard_job_runs_shard_steps_in_separate_processes(defs, project, instance, monkeypatch):
    _prepare(defs, instance)
    shard = {"shard_size": 8}
    _run(defs, instance, {"student_chains", "latents"}, {"student_chains": CHAINS_CONFIG, "latents": {"config": shard}})
    store = LatentStore(StorageLayout(project[2]))
    one = store.read("tiny", "v1")
    n_shards = len(list(store.iter_shards("tiny", "v1")))
    assert n_shards >= 4

    monkeypatch.setenv("RJEPA_STORAGE", str(project[2]))
    monkeypatch.setenv("RJEPA_CONFIGS", str(project[1]))
    run_config = {
        "ops": {"plan_latent_shards": {"config": {**shard, "shards_per_step": -(-n_shards // 2)}}},
        # step processes fork from a server that imported the code once (a fresh one pays ~10 s of imports here)
        "execution": {"config": {"start_method": {"forkserver": {"preload_modules": ["rjepa_assets.definitions"]}}}},
    }
    with dg.execute_job(
        dg.reconstructable(_shard_job), instance=instance, tags={"dagster/partition": str(KEY)}, run_config=run_config
    ) as res:
        assert res.success
        step_pids = {
            e.pid for e in res.all_events if e.is_step_start and e.step_key.startswith("extract_latent_shards")
        }
        run_id = res.run_id
    assert len(step_pids) == 2  # the multiprocess executor ran the two shard ranges as two processes
    two = store.read("tiny", "v1")
    assert [s.cot_id for s in two] == [s.cot_id for s in one]
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(b.H.astype(np.float32), a.H.astype(np.float32), rtol=2**-10, atol=1e-6)
    mat = instance.get_latest_materialization_event(dg.AssetKey("latents")).asset_materialization
    assert mat.partition == str(KEY) and mat.metadata["extraction_steps"].value == 2
    assert instance.get_run_by_id(run_id).job_name == "latents_by_shard_job"


def test_a_bad_shard_size_fails_with_what_to_use(defs, instance):
    _prepare(defs, instance)
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey("latents")})
    res = job.execute_in_process(
        partition_key=KEY, instance=instance, run_config={"ops": {"latents": {"config": {"shard_size": 100}}}},
        raise_on_error=False,
    )  # fmt: skip
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error.message
    assert "nor a multiple of it" in failure and "use e.g. 1024" in failure


def test_jepa_checkpoint_on_two_torchrun_processes_matches_one(defs, project, instance):
    from rjepa_assets.definitions import build_defs

    _prepare(defs, instance)
    _run(defs, instance, {"student_chains", "latents"}, {"student_chains": CHAINS_CONFIG})
    ops = {"jepa_checkpoint": {"config": {"max_steps": 12, "publish": False, "device": "cpu"}}}
    _run(defs, instance, {"jepa_checkpoint"}, ops)
    one = instance.get_latest_materialization_event(dg.AssetKey("jepa_checkpoint")).asset_materialization
    ddp_defs = build_defs({**project[0], "training": TrainingResource(nproc=2)})
    res = _run(ddp_defs, instance, {"jepa_checkpoint"}, ops)
    two = instance.get_latest_materialization_event(dg.AssetKey("jepa_checkpoint")).asset_materialization
    assert one.metadata["nproc"].value == 1 and two.metadata["nproc"].value == 2

    def losses(mat) -> list[float]:
        history = json.loads((Path(mat.metadata["path"].value).parent / "history.json").read_text())
        return [r["loss"] for r in history if r["kind"] == "train"]

    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-4
    # the torchrun command and the trainer's own lines are in the run's logs; the checkpoint was calibrated
    msgs = _messages(instance, res.run_id)
    assert any("torch.distributed.run" in m and "--nproc-per-node=2" in m for m in msgs)
    assert any("[rjepa.ddp] 12 steps on 2 process(es)" in m for m in msgs)
    meta = json.loads((Path(two.metadata["path"].value) / "meta.json").read_text())
    assert meta["calibration"] and meta["num_train"] > 0

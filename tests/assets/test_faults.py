"""kill -9 during real `dagster asset materialize` runs, and a corrupted shard (issue 17, item 3).

Each run is a real `dagster` CLI process on a DAGSTER_HOME in tmp, loading the real code location with the
tiny test project through RJEPA_STORAGE / RJEPA_CONFIGS. It is killed with SIGKILL on its whole process
group (as when a machine or pod dies) at a moment chosen from what it has written to disk, then the same
materialization is run again:

- `latents` (many small shards): readers see the previous whole set the whole time; the re-run keeps the
  shards the killed run committed (same files, same inodes) and extracts only the others; checks pass.
- `jepa_checkpoint`: the re-run takes over the killed run's folder and resumes from its last saved state;
  every step 1..total is trained exactly once across the two runs.
- a flipped byte in a committed shard: `latents_shards_intact` fails naming the shard and what to do;
  re-materializing repairs the set and the check passes again.

With RJEPA_FAULTS_OUT set (`rjepa bench faults`), the figures (shards kept vs extracted, the resumed step,
the check messages) are written there as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from rjepa_assets.defs.partitions import multi_key
from rjepa_core.jepa.runs import RUN, last_step
from rjepa_core.llm.resume import resume_folders, staged_shards
from rjepa_core.llm.sharded import partition_inputs, plan_shards
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.assets.conftest import TINY_RJEPA, V1, write_yaml

ROOT = Path(__file__).resolve().parents[2]
KEY = str(multi_key("v1", "tiny"))
OLD_SHARD, NEW_SHARD = 8, 2  # the set before the kill, and the one the killed run builds (many shards)
TOTAL_STEPS, SAVE_EVERY = 240, 10
FIGURES: dict = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_llm_dir):
    """A tmp project (configs, storage, Dagster home) with dataset v1 and the tiny student's chains."""
    from rjepa_assets.definitions import build_defs
    from rjepa_assets.defs.resources import ConfigsResource, StorageResource, StudentLLMResource

    base = tmp_path_factory.mktemp("faults")
    configs, store, home = base / "configs", base / "store", base / "dagster_home"
    home.mkdir()
    write_yaml(configs / "llms" / "tiny.yaml", {"llm_tag": "tiny", "source": str(tiny_llm_dir), "hidden_size": 64,
                                                 "batch_size": 8})  # fmt: skip
    write_yaml(configs / "datasets" / "v1.yaml", V1)
    train = {**TINY_RJEPA["train"], "val_every": SAVE_EVERY, "checkpoint_every": SAVE_EVERY}
    optim = {**TINY_RJEPA["optim"], "total_steps": TOTAL_STEPS}
    write_yaml(configs / "rjepa" / "default.yaml", {**TINY_RJEPA, "optim": optim, "train": train})
    resources = {
        "storage": StorageResource(root=str(store)),
        "configs": ConfigsResource(root=str(configs)),
        "student_llm": StudentLLMResource(registry_dir=str(configs / "llms"), device="cpu"),
    }
    defs = build_defs(resources)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("dataset_version", ["v1"])
        instance.add_dynamic_partitions("llm", ["tiny"])
        assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success
        chains = {"student_chains": {"config": {"k": 2, "k_test": 3, "max_new_tokens": 12}}}
        _in_process(defs, instance, {"student_chains"}, chains)
        env = {**os.environ, "DAGSTER_HOME": str(home), "RJEPA_STORAGE": str(store), "RJEPA_CONFIGS": str(configs),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # fmt: skip
        env.pop("RJEPA_EXECUTOR", None)  # in-process: the run is one process (its group is killed anyway)
        yield {"defs": defs, "instance": instance, "env": env, "layout": StorageLayout(store), "base": base}
    out = os.environ.get("RJEPA_FAULTS_OUT")
    if out and FIGURES:
        FIGURES["command"] = "rjepa bench faults  (RJEPA_FAULTS_OUT=... pytest -q tests/assets/test_faults.py)"
        FIGURES["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        Path(out).write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


def _in_process(defs, instance, assets: set[str], ops: dict) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("llm_pipeline_job").get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    res = job.execute_in_process(partition_key=KEY, instance=instance, run_config={"ops": ops}, raise_on_error=False)
    assert res.success, [e.event_specific_data for e in res.all_events if e.is_failure]
    return res


def _materialize(site, asset: str, ops: dict) -> subprocess.Popen:
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "asset", "materialize", "-m", "rjepa_assets.definitions", "--select", asset,
           "--partition", KEY, "--config-json", json.dumps({"ops": ops})]  # fmt: skip
    path = site["base"] / f"{asset}-{time.monotonic_ns()}.log"
    with open(path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=site["env"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    proc.log_path = path
    return proc


def _kill_when(proc: subprocess.Popen, ready, during=None, timeout: float = 90) -> float:
    """SIGKILL the run's whole process group as soon as `ready()`; call `during()` while waiting."""
    start = deadline = time.monotonic()
    deadline += timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before the kill: {_tail(proc)}"
        assert time.monotonic() < deadline, "the run never reached the kill point"
        if during is not None:
            during()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return time.monotonic() - start


def _finish(proc: subprocess.Popen, timeout: float = 180) -> None:
    assert proc.wait(timeout=timeout) == 0, _tail(proc)


def _tail(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()[-3000:]


def _last_run(instance) -> dg.DagsterRun:
    return instance.get_runs(limit=1)[0]


def _checks(instance, run_id: str) -> dict[str, bool]:
    evs = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed for e in evs}


def _materialization(instance, asset: str):
    return instance.get_latest_materialization_event(dg.AssetKey(asset)).asset_materialization


def _ensure_latents(site) -> None:
    if not LatentStore(site["layout"]).count("tiny", "v1"):
        ops = {"latents": {"config": {"shard_size": OLD_SHARD}}}
        _in_process(site["defs"], site["instance"], {"latents"}, ops)


def test_killed_latents_run_resumes_with_only_the_missing_shards(site):
    layout, instance = site["layout"], site["instance"]
    store = LatentStore(layout)
    _ensure_latents(site)
    before = store.read("tiny", "v1")
    old_shards = [p.name for p in store.iter_shards("tiny", "v1")]
    plan = plan_shards(len(partition_inputs(layout, "tiny", "v1")[1]), NEW_SHARD)
    assert len(plan) >= 12 and len(old_shards) != len(plan)

    def committed() -> int:
        folders = resume_folders(layout, "tiny", "v1")
        return len(list(folders[0].glob("shard-*.parquet"))) if folders else 0

    reads = []

    def read_the_set() -> None:  # a reader meanwhile: always the previous set, whole
        names = [p.name for p in store.iter_shards("tiny", "v1")]
        reads.append((names == old_shards, store.count("tiny", "v1") == len(before)))

    proc = _materialize(site, "latents", {"latents": {"config": {"shard_size": NEW_SHARD}}})
    _kill_when(proc, lambda: committed() >= 3, during=read_the_set)
    assert reads and all(a and b for a, b in reads), "a reader saw something else than the previous whole set"
    (staging,) = resume_folders(layout, "tiny", "v1")
    kept = staged_shards(staging, plan)
    assert 3 <= len(kept) < len(plan) and kept == list(range(len(kept)))  # one process commits in order
    inodes = {k: (staging / f"shard-{k:05d}.safetensors").stat().st_ino for k in kept}
    # after the kill: still the previous set, whole and verified
    assert [p.name for p in store.iter_shards("tiny", "v1")] == old_shards and store.verify("tiny", "v1") == []
    assert [s.cot_id for s in store.read("tiny", "v1")] == [s.cot_id for s in before]

    proc = _materialize(site, "latents", {"latents": {"config": {"shard_size": NEW_SHARD}}})
    _finish(proc)
    run = _last_run(instance)
    mat = _materialization(instance, "latents")
    assert mat.metadata["shards_kept"].value == len(kept)
    assert mat.metadata["shards_extracted"].value == len(plan) - len(kept)
    assert mat.metadata["num_shards"].value == len(plan)
    final = layout.latents_dir("tiny", "v1")
    assert {k: (final / f"shard-{k:05d}.safetensors").stat().st_ino for k in kept} == inodes  # the same files
    msgs = [e.user_message for e in instance.all_logs(run.run_id)]
    assert sum("kept (already committed and intact)" in m for m in msgs) == len(kept)
    assert sum(m.startswith("[rjepa.sharded] shard") and "sequences committed" in m for m in msgs) == len(plan) - len(
        kept
    )
    after = store.read("tiny", "v1")
    assert [s.cot_id for s in after] == [s.cot_id for s in before] and store.verify("tiny", "v1") == []
    for a, b in zip(before, after, strict=True):  # other batching (chunks of 2, not 8): equal up to float16 rounding
        np.testing.assert_allclose(b.H.astype(np.float32), a.H.astype(np.float32), rtol=2**-7, atol=1e-3)
    assert _checks(instance, run.run_id) == {"latents_finite_and_registered_width": True, "latents_shards_intact": True}
    assert resume_folders(layout, "tiny", "v1") == []  # the commit consumed the staging folder
    FIGURES["latents_kill"] = {"shards_planned": len(plan), "shards_committed_before_kill": len(kept),
                               "shards_kept_on_rerun": mat.metadata["shards_kept"].value,
                               "shards_extracted_on_rerun": mat.metadata["shards_extracted"].value,
                               "reader_polls_during_the_killed_run": len(reads), "reader_saw_a_partial_set": False,
                               "checks_after_rerun": _checks(instance, run.run_id)}  # fmt: skip


def test_killed_jepa_checkpoint_run_resumes_from_its_last_saved_state(site):
    layout, instance = site["layout"], site["instance"]
    _ensure_latents(site)
    runs_dir = layout.checkpoints_dir("tiny", "v1")
    ops = {"jepa_checkpoint": {"config": {"publish": False, "device": "cpu"}}}

    def saved() -> int:
        try:  # the trainer swaps last/ while this reads it: a miss is read again on the next poll
            steps = [last_step(p) for p in runs_dir.glob("*") if (p / RUN).exists()] if runs_dir.exists() else []
        except (OSError, ValueError):
            return 0
        return max([s for s in steps if s is not None], default=0)

    proc = _materialize(site, "jepa_checkpoint", ops)
    _kill_when(proc, lambda: saved() >= 3 * SAVE_EVERY)
    (folder,) = [p for p in runs_dir.iterdir() if (p / RUN).exists()]
    step = last_step(folder)
    assert 3 * SAVE_EVERY <= step < TOTAL_STEPS and step % SAVE_EVERY == 0
    assert json.loads((folder / RUN).read_text())["state"] == "training"

    proc = _materialize(site, "jepa_checkpoint", ops)
    _finish(proc)
    run = _last_run(instance)
    mat = _materialization(instance, "jepa_checkpoint")
    assert mat.metadata["run_id"].value == folder.name and mat.metadata["resumed_from_step"].value == step
    assert mat.metadata["steps"].value == TOTAL_STEPS
    history = json.loads((folder / "history.json").read_text())
    assert [r["step"] for r in history if r["kind"] == "train"] == list(range(1, TOTAL_STEPS + 1))
    assert json.loads((folder / RUN).read_text())["state"] == "done"
    assert [p.name for p in runs_dir.iterdir() if p.is_dir()] == [folder.name]  # no second run folder
    msgs = [e.user_message for e in instance.all_logs(run.run_id)]
    assert any(f"resuming the interrupted training run {folder.name} from its step {step}" in m for m in msgs)
    assert _checks(instance, run.run_id) == {"checkpoint_not_collapsed": True}
    FIGURES["jepa_checkpoint_kill"] = {"total_steps": TOTAL_STEPS, "checkpoint_every": SAVE_EVERY,
                                       "last_saved_step_at_kill": step, "resumed_from_step": step,
                                       "steps_retrained": TOTAL_STEPS - step, "same_run_folder": True,
                                       "checks_after_rerun": _checks(instance, run.run_id)}  # fmt: skip


def test_a_corrupted_shard_is_found_by_the_check_and_rematerializing_repairs_it(site):
    layout, instance, defs = site["layout"], site["instance"], site["defs"]
    store = LatentStore(layout)
    _ensure_latents(site)
    check_job = defs.resolve_job_def("latents_integrity_job")

    def integrity() -> dg.AssetCheckEvaluation:
        res = check_job.execute_in_process(instance=instance)
        (ev,) = res.get_asset_check_evaluations()
        return ev

    assert integrity().passed
    victim = sorted(store.iter_shards("tiny", "v1"))[1].with_suffix(".safetensors")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data, file size unchanged
    victim.write_bytes(bytes(data))
    ev = integrity()
    message = ev.description
    assert not ev.passed and victim.name in message and "sha256 differs" in message
    assert f"re-materialize `latents` for partition {KEY}" in message and "dagster asset materialize" in message

    res = _in_process(defs, instance, {"latents"}, {"latents": {"config": {"shard_size": OLD_SHARD}}})
    assert {e.check_name: e.passed for e in res.get_asset_check_evaluations()}["latents_shards_intact"] is True
    assert store.verify("tiny", "v1") == [] and integrity().passed
    FIGURES["corrupted_shard"] = {"corruption": f"one byte flipped in {victim.name}", "check_message": message,
                                  "check_after_rematerialize": True}  # fmt: skip

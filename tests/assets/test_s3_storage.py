"""The tiny pipeline materialized by Dagster with RJEPA_STORAGE=s3://…, against a real S3-compatible server
(moto's standalone server on 127.0.0.1, tests/s3server.py), then read back from the bucket by another
"machine" (an empty cache folder), by DuckDB over the bucket itself, and by the service's pointer reader."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np

from rjepa_assets.defs.partitions import multi_key
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.index import connect_objects
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.pointers import read_latest_checkpoint
from tests.assets.test_materialize import run_pipeline


def test_pipeline_materializes_into_the_bucket_and_reads_back_elsewhere(project, bucket, instance, monkeypatch):
    from rjepa_assets.definitions import build_defs
    from rjepa_assets.defs.resources import StorageResource, duckdb_resource
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_serve.settings import ServeSettings
    from rjepa_serve.state import read_pointer

    resources, _, local_store = project
    bucket.on("code")  # the code location's cache folder
    monkeypatch.setenv("RJEPA_STORAGE", bucket.uri)
    assert Path(duckdb_resource().database) == bucket.cache("code").resolve() / "index.duckdb"
    defs = build_defs({**resources, "storage": StorageResource()})  # root from $RJEPA_STORAGE, as deployed
    r1, r2 = run_pipeline(defs, instance)
    assert r1.success and r2.success
    assert not local_store.exists()  # nothing went to a local store

    code = bucket.layout("code")
    assert code.remote.dirty_units() == []  # every artefact the run committed is published
    keys = bucket.keys()
    units = {k.split("/.rjepa-units/")[1] for k in keys if "/.rjepa-units/" in k}
    run_id = read_latest_checkpoint(code, "tiny")["run_id"]
    assert {
        "datasets/v1.json",
        "chains/tiny/v1.json",
        "latents/tiny/v1.json",
        f"checkpoints/tiny/v1/{run_id}.json",
        "checkpoints/tiny/LATEST.json.json",
        "decoders/tiny/v1.json",
        "reports/tiny/v1.json",
    } <= units
    areas = {k.split("/")[2] for k in keys}
    assert areas == {".rjepa-units", ".rjepa-objects"}
    hidden = [k for k in keys if any(part.startswith(".") for part in k.split("/")[3:])]
    assert hidden == []  # no temp file, staging folder, lock or index was published

    reader = bucket.layout("reader")  # another machine: only the bucket in common
    assert reader.root != code.root
    problems = read_records(Problem, reader.problems_path("v1"))
    assert problems == read_records(Problem, code.problems_path("v1")) and len(problems) >= 10
    chains = read_records(ChainOfThought, reader.student_chains_path("tiny", "v1"))
    written = read_records(ChainOfThought, code.student_chains_path("tiny", "v1"))
    assert [c.cot_id for c in chains] == [c.cot_id for c in written]
    store = LatentStore(reader)
    assert store.verify("tiny", "v1") == [] and store.count("tiny", "v1") == LatentStore(code).count("tiny", "v1")
    assert store.count("tiny", "v1") >= len(chains)
    pointer = read_latest_checkpoint(reader, "tiny")
    assert Path(pointer["path"]).is_relative_to(reader.root)
    ck = load_checkpoint(pointer["path"])
    assert ck.meta["jepa_vote"]["tau_rel"] > 0
    report = json.loads((reader.reports_dir("tiny", "v1") / "report.json").read_text())
    assert report["llm_tag"] == "tiny" and "jepa" in report["methods"]
    assert json.loads((reader.decoder_dir("tiny", "v1") / "decoder.json").read_text())["latent_dim"] == 64

    # DuckDB straight over the bucket (registered s3fs filesystem), and the service's pointer reader
    con = connect_objects(reader)
    n_latents = con.execute("SELECT count(*) FROM latents WHERE llm_tag = 'tiny'").fetchone()[0]
    assert n_latents == store.count("tiny", "v1")
    assert con.execute("SELECT count(*) FROM problems").fetchone()[0] == len(problems)
    bucket.on("service")
    served = read_pointer(ServeSettings(storage=bucket.uri, llm_tag="tiny"))
    assert served["run_id"] == pointer["run_id"] and Path(served["path"]).is_dir()

    mat = instance.get_latest_materialization_event(dg.AssetKey("latents")).asset_materialization
    assert mat.partition == multi_key("v1", "tiny") and mat.metadata["num_sequences"].value == store.count("tiny", "v1")


def _shard_job():
    """The job as a step subprocess rebuilds it: default resources, pointed at the test project by env."""
    from rjepa_assets.definitions import build_defs

    return build_defs().resolve_job_def("latents_by_shard_job")


def test_latents_by_shard_job_on_the_bucket_from_separate_step_processes(project, bucket, instance, monkeypatch):
    """Step processes of one machine (multiprocess executor) share its cache; each mirrors the bucket, the
    commit step publishes the set and removes the staging from the bucket (other machines:
    tests/core/store/test_remote.py::test_shards_staged_on_two_machines_are_committed_on_a_third)."""
    from rjepa_assets.definitions import build_defs
    from rjepa_assets.defs.resources import StorageResource
    from tests.assets.test_scaleout import CHAINS_CONFIG, KEY, _prepare, _run

    bucket.on("code")
    monkeypatch.setenv("RJEPA_STORAGE", bucket.uri)
    monkeypatch.setenv("RJEPA_CONFIGS", str(project[1]))
    defs = build_defs({**project[0], "storage": StorageResource()})
    _prepare(defs, instance)
    shard = {"shard_size": 8}
    _run(defs, instance, {"student_chains", "latents"}, {"student_chains": CHAINS_CONFIG, "latents": {"config": shard}})
    one = LatentStore(bucket.layout("reader")).read("tiny", "v1")
    n_shards = -(-len(one) // 8)
    assert n_shards >= 4

    run_config = {
        "ops": {"plan_latent_shards": {"config": {**shard, "shards_per_step": -(-n_shards // 2)}}},
        "execution": {"config": {"start_method": {"forkserver": {"preload_modules": ["rjepa_assets.definitions"]}}}},
    }
    bucket.on("code")
    with dg.execute_job(
        dg.reconstructable(_shard_job), instance=instance, tags={"dagster/partition": str(KEY)}, run_config=run_config
    ) as res:
        assert res.success
        step_pids = {e.pid for e in res.all_events if e.is_step_start and e.step_key.startswith("extract_latent")}
    assert len(step_pids) == 2
    reader = bucket.layout("reader")
    two = LatentStore(reader).read("tiny", "v1")
    assert [s.cot_id for s in two] == [s.cot_id for s in one] and LatentStore(reader).verify("tiny", "v1") == []
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(b.H.astype(np.float32), a.H.astype(np.float32), rtol=2**-10, atol=1e-6)
    assert not [k for k in bucket.keys() if ".shards-" in k]  # staging published by the steps, then removed
    assert bucket.layout("code").remote.dirty_units() == []

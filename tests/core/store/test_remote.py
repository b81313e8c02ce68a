"""Object storage (`s3://bucket/prefix`) against a real S3-compatible HTTP server (moto's, on 127.0.0.1).

Machine "a" writes through its own cache folder; machine "b" (another cache folder, nothing shared but the
bucket) reads everything back. Nothing here is mocked: boto/s3fs talk HTTP to the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rjepa_core.io import atomic_write_json
from rjepa_core.schemas import ChainOfThought, Problem, read_records, write_records
from rjepa_core.store.index import build_index, connect_objects, query
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout, local_root
from rjepa_core.store.pointers import (
    pointer_history,
    publish_latest_checkpoint,
    read_latest_checkpoint,
    rollback_latest,
)
from rjepa_core.store.s3 import StorageError
from tests.core.store.factories import make_seqs

REPO = Path(__file__).resolve().parents[3]


def problems(n: int, version: str = "v1") -> list[Problem]:
    return [
        Problem(
            problem_id=f"{version}-p{i}",
            domain="math",
            source="test",
            statement=f"{i} + {i} = ?",
            answer_gold=str(2 * i),
            split=("train", "val", "test")[i % 3],
        )
        for i in range(n)
    ]


def chains(ps: list[Problem], origin: str = "gold") -> list[ChainOfThought]:
    return [
        ChainOfThought(
            cot_id=f"{p.problem_id}-c",
            problem_id=p.problem_id,
            steps=["a", "b"],
            final_answer="1",
            is_valid=True,
            origin=origin,
        )
        for p in ps
    ]


def tiny_checkpoint(path: Path, meta: dict) -> Path:
    from rjepa_core.config import RJEPAConfig, rjepa_tiny
    from rjepa_core.jepa.checkpoint import save_checkpoint
    from rjepa_core.jepa.model import RJEPA

    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=8, max_steps=8))
    return save_checkpoint(path, RJEPA(cfg.model), cfg, meta)


def write_everything(layout: StorageLayout) -> dict:
    ps = problems(6)
    write_records(ps, layout.problems_path("v1"))
    write_records(chains(ps), layout.cots_path("v1"))
    atomic_write_json(layout.manifest_path("v1"), {"version": "v1", "num_problems": len(ps)})
    write_records(chains(ps, "student:tiny"), layout.student_chains_path("tiny", "v1"))
    seqs = make_seqs(7)
    LatentStore(layout).write("tiny", "v1", seqs, shard_size=3)
    tiny_checkpoint(layout.checkpoint_dir("tiny", "v1", "run1") / "best", {"val_loss": 0.5})
    atomic_write_json(layout.reports_dir("tiny", "v1") / "report.json", {"llm_tag": "tiny", "acc": 0.25})
    publish_latest_checkpoint(layout, "tiny", "v1", "run1", {"val_loss": 0.5})
    build_index(layout)  # local to this machine: never published
    return {"problems": ps, "seqs": seqs}


def test_every_artefact_kind_round_trips_through_the_bucket(bucket):
    from rjepa_core.jepa.checkpoint import load_checkpoint

    a = bucket.layout("a")
    assert a.root == bucket.cache("a").resolve() and a.remote is not None
    assert local_root(bucket.uri) == a.root and a.uri == bucket.uri
    wrote = write_everything(a)
    keys = bucket.keys()
    assert a.remote.dirty_units() == []  # every commit published itself
    assert not [k for k in keys if "index.duckdb" in k or ".lock" in k or ".v1.new" in k or ".pull-" in k]
    manifests = {k.split("/.rjepa-units/")[1] for k in keys if "/.rjepa-units/" in k}
    assert manifests == {
        "datasets/v1.json",
        "chains/tiny/v1.json",
        "latents/tiny/v1.json",
        "checkpoints/tiny/v1/run1.json",
        "checkpoints/tiny/LATEST.json.json",
        "checkpoints/tiny/HISTORY.jsonl.json",
        "reports/tiny/v1.json",
    }

    b = bucket.layout("b")  # another machine: an empty cache, the same bucket
    assert b.root != a.root and not (b.root / "index.duckdb").exists()
    assert read_records(Problem, b.problems_path("v1")) == wrote["problems"]
    assert [c.cot_id for c in read_records(ChainOfThought, b.cots_path("v1"))] == [f"v1-p{i}-c" for i in range(6)]
    assert len(read_records(ChainOfThought, b.student_chains_path("tiny", "v1"))) == 6
    assert b.versions() == ["v1"]
    store = LatentStore(b)
    got = store.read("tiny", "v1")
    assert [s.cot_id for s in got] == [s.cot_id for s in wrote["seqs"]]
    assert all(np.array_equal(g.H, w.H) for g, w in zip(got, wrote["seqs"], strict=True))
    assert store.verify("tiny", "v1") == [] and store.stats("tiny", "v1")["num_shards"] == 3
    pointer = read_latest_checkpoint(b, "tiny")
    assert pointer["run_id"] == "run1" and Path(pointer["path"]) == b.checkpoint_dir("tiny", "v1", "run1") / "best"
    raw = json.loads((b.checkpoints_root("tiny") / "LATEST.json").read_text())
    assert raw["path"] == "checkpoints/tiny/v1/run1/best"  # stored relative: each machine has its own cache
    assert load_checkpoint(pointer["path"]).meta["val_loss"] == 0.5
    assert json.loads((b.reports_dir("tiny", "v1") / "report.json").read_text())["acc"] == 0.25
    assert query(b, "SELECT count(*) AS n FROM latents")[0]["n"] == 7  # the local index over b's mirror

    # an append on b publishes only what changed; a reads it on its next layout
    before = set(bucket.keys())
    LatentStore(b).write("tiny", "v1", make_seqs(2, seed=5), append=True, shard_size=3)
    new = sorted(set(bucket.keys()) - before)
    assert sorted(Path(k).name for k in new) == ["shard-00003.parquet", "shard-00003.safetensors"]
    assert LatentStore(bucket.layout("a")).count("tiny", "v1") == 9


def test_latest_pointer_swaps_atomically_and_rolls_back(bucket):
    a = bucket.layout("a")
    for run in ("run1", "run2"):
        tiny_checkpoint(a.checkpoint_dir("tiny", "v1", run) / "best", {"run": run})
    publish_latest_checkpoint(a, "tiny", "v1", "run1")
    assert read_latest_checkpoint(bucket.layout("b"), "tiny")["run_id"] == "run1"

    # between the upload of the new pointer's object and the manifest PUT, readers still see run1
    seen = []
    a_mirror = a.remote
    original = a_mirror.publish_unit

    def observe(unit, **kw):
        if unit.name == "LATEST.json":
            kw["before_swap"] = lambda: seen.append(read_latest_checkpoint(bucket.layout("b"), "tiny")["run_id"])
        return original(unit, **kw)

    a_mirror.publish_unit = observe
    try:
        bucket.on("a")
        publish_latest_checkpoint(a, "tiny", "v1", "run2")
    finally:
        del a_mirror.publish_unit
    assert seen == ["run1"]
    b = bucket.layout("b")
    assert read_latest_checkpoint(b, "tiny")["run_id"] == "run2"
    assert Path(read_latest_checkpoint(b, "tiny")["path"]).is_dir()  # the checkpoint came before its pointer

    bucket.on("a")
    rollback_latest(a, "tiny")
    b = bucket.layout("b")
    assert read_latest_checkpoint(b, "tiny")["run_id"] == "run1"
    assert [p["action"] for p in pointer_history(b, "tiny")] == ["publish", "publish", "rollback"]

    # a unit that appears after b's last pull (in a folder b has listed before) is fetched too
    bucket.on("a")
    tiny_checkpoint(a.checkpoint_dir("tiny", "v1", "run3") / "best", {"run": "run3"})
    publish_latest_checkpoint(a, "tiny", "v1", "run3")
    pointer = read_latest_checkpoint(bucket.layout("b"), "tiny")
    assert pointer["run_id"] == "run3" and (Path(pointer["path"]) / "meta.json").is_file()


KILLED_PUBLISHER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{repo!r}]
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store import remote
    from tests.core.store.factories import make_seqs

    layout = StorageLayout({uri!r})
    put = layout.remote.fs.pipe_file

    def pipe_file(key, data, **kw):  # the manifest PUT of the new set: die right before it
        if key.endswith("/latents/tiny/v1.json"):
            os.kill(os.getpid(), signal.SIGKILL)
        return put(key, data, **kw)

    layout.remote.fs.pipe_file = pipe_file
    LatentStore(layout).write("tiny", "v1", make_seqs(5, seed=9), overwrite=True, shard_size=2)
    """
)


def test_a_publisher_killed_before_the_manifest_swap_changes_nothing_readers_see(bucket):
    a = bucket.layout("a")
    old = make_seqs(4, seed=1)
    LatentStore(a).write("tiny", "v1", old, shard_size=3)
    objects_before = set(bucket.keys())

    bucket.on("killed")
    script = KILLED_PUBLISHER.format(repo=str(REPO), uri=bucket.uri)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-3000:]
    uploaded = set(bucket.keys()) - objects_before
    assert uploaded and all("/.rjepa-objects/latents/tiny/v1/" in k for k in uploaded)  # the new set's objects

    b = bucket.layout("b")
    got = LatentStore(b).read("tiny", "v1")
    assert [s.cot_id for s in got] == [s.cot_id for s in old]  # the old set, whole
    assert all(np.array_equal(g.H, w.H) for g, w in zip(got, old, strict=True))
    assert LatentStore(b).verify("tiny", "v1") == []
    con = connect_objects(b)
    assert con.execute("SELECT count(*) FROM latents").fetchone()[0] == 4

    # the killed machine's cache kept its committed set (the bucket did not change since): its next push
    # publishes it, reusing the objects already uploaded
    killed = bucket.layout("killed")
    assert LatentStore(killed).count("tiny", "v1") == 5
    assert [u.as_posix() for u in killed.remote.dirty_units()] == ["latents/tiny/v1"]
    killed.remote.push()
    assert LatentStore(bucket.layout("b")).count("tiny", "v1") == 5
    assert {k for k in bucket.keys() if "/.rjepa-objects/latents/" in k} >= uploaded
    # objects neither the current nor the previous manifest names are collected: only 3 + 1 shards remain
    LatentStore(bucket.layout("a")).write("tiny", "v1", make_seqs(2, seed=11), overwrite=True, shard_size=2)
    live = {k for k in bucket.keys() if "/.rjepa-objects/latents/" in k}
    assert len(live) == 2 * (3 + 1)


def test_duckdb_queries_the_shards_in_the_bucket(bucket):
    a = bucket.layout("a")
    write_everything(a)
    LatentStore(a).write("other", "v1", make_seqs(3, hidden=4, tag="other", seed=3), shard_size=2)
    # no cache at all on the reading side: DuckDB reads the objects through the registered s3fs filesystem
    bucket.on("nothing")
    reader = StorageLayout(bucket.uri, pull=False)
    con = connect_objects(reader)
    rows = con.execute(
        "SELECT llm_tag, dataset_version, count(*), sum(num_steps) FROM latents GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    local = query(
        a, "SELECT llm_tag, dataset_version, count(*) AS n, sum(num_steps) AS s FROM latents GROUP BY ALL ORDER BY ALL"
    )
    assert rows == [(r["llm_tag"], r["dataset_version"], r["n"], r["s"]) for r in local]
    assert [r[0] for r in rows] == ["other", "tiny"] and rows[1][2] == 7
    assert con.execute("SELECT dataset_version, count(*) FROM problems GROUP BY ALL").fetchall() == [("v1", 6)]
    assert con.execute("SELECT count(*) FROM student_chains WHERE llm_tag = 'tiny'").fetchone()[0] == 6
    assert not bucket.cache("nothing").exists()  # nothing was downloaded to a cache


def test_bad_object_storage_settings_say_what_to_do(bucket, monkeypatch, tmp_path):
    from tests.s3server import free_port

    monkeypatch.setenv("RJEPA_STORAGE_CACHE", str(tmp_path / "c1"))
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist: create it"):
        StorageLayout("s3://no-such-bucket/x")
    monkeypatch.setenv("RJEPA_STORAGE_CACHE", str(tmp_path / "c2"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(StorageError, match="cannot reach the endpoint: check AWS_ENDPOINT_URL"):
        StorageLayout(bucket.uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", bucket.server.endpoint)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("RJEPA_STORAGE_CACHE", str(tmp_path / "c3"))
    with pytest.raises(StorageError, match="no credentials: set AWS_ACCESS_KEY_ID"):
        StorageLayout(bucket.uri)
    with pytest.raises(ValueError, match="names no bucket"):
        StorageLayout("s3:///prefix")


def test_shards_staged_on_two_machines_are_committed_on_a_third(bucket):
    """latents_by_shard_job under k8s_job_executor with s3://: each extraction pod has its own cache."""
    from rjepa_core.llm.sharded import discard_staging, start_staging
    from rjepa_core.store.shards import write_shard

    plan = bucket.layout("plan")
    LatentStore(plan).write("tiny", "v1", make_seqs(2, seed=4), shard_size=2)  # the set the commit replaces
    staging = plan.portable(start_staging(plan, "tiny", "v1"))
    assert not Path(staging).is_absolute() and Path(staging).name.startswith(".v1.shards-")
    seqs = make_seqs(7, seed=2)
    for machine, k in (("pod-a", 0), ("pod-b", 1), ("pod-a", 2)):
        layout = bucket.layout(machine)
        write_shard(layout.resolve(staging), k, seqs[3 * k : 3 * k + 3])
    assert LatentStore(bucket.layout("reader")).count("tiny", "v1") == 2  # staged shards are not the set

    commit = bucket.layout("commit")
    LatentStore(commit).commit_staged("tiny", "v1", commit.resolve(staging), [3, 3, 1])
    discard_staging(commit, commit.resolve(staging))
    got = LatentStore(bucket.layout("reader")).read("tiny", "v1")
    assert [s.cot_id for s in got] == [s.cot_id for s in seqs]
    assert all(np.array_equal(g.H, w.H) for g, w in zip(got, seqs, strict=True))
    assert not [k for k in bucket.keys() if ".shards-" in k]  # the staging units are gone from the bucket


def test_a_publish_from_an_older_copy_uploads_again_what_was_collected_since(bucket):
    """Objects named by the manifest a cache last fetched may have been collected since: re-uploaded, never
    named missing (last writer wins, whole)."""
    a = bucket.layout("a")
    folder = a.reports_dir("tiny", "v1")
    for name in ("x.json", "y.json"):
        atomic_write_json(folder / name, {"v": 1})
    b = bucket.layout("b")  # fetched version 1
    for v in (2, 3):  # y's version-1 object is collected once two newer manifests replaced it
        atomic_write_json(folder / "y.json", {"v": v})
    assert not [k for k in bucket.keys() if k.endswith("/y.json") and bucket.fs.cat_file(k) == b'{\n  "v": 1\n}']
    atomic_write_json(b.reports_dir("tiny", "v1") / "x.json", {"v": "b"})  # b's copy is otherwise version 1
    c = bucket.layout("c")
    got = {n: json.loads((c.reports_dir("tiny", "v1") / n).read_text()) for n in ("x.json", "y.json")}
    assert got == {"x.json": {"v": "b"}, "y.json": {"v": 1}}

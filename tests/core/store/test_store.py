"""Latent shards, the DuckDB index and checkpoint pointers, on real files."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rjepa_core.schemas import ChainOfThought, LatentSequence, Problem, write_records
from rjepa_core.store.index import build_index, counts_by, query
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import publish_latest_checkpoint, read_latest_checkpoint, rollback_latest

HERE = Path(__file__).parent


def make_seqs(n: int, hidden: int = 8, tag: str = "tiny") -> list[LatentSequence]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        steps = i % 4 + 1
        out.append(
            LatentSequence(
                cot_id=f"c{i}",
                problem_id=f"p{i // 2}",
                llm_tag=tag,
                layer_idx=-2,
                hidden_size=hidden,
                num_steps=steps,
                step_spans=[(3 * k, 3 * k + 3) for k in range(steps)],
                token_ids=list(range(3 * steps + 5)),
                domain="math" if i % 3 else "code",
                is_valid=bool(i % 2),
                split=("train", "val", "test")[i % 3],
                origin="gold" if i % 5 == 0 else "student:tiny",
                H=(rng.standard_normal((steps, hidden)) * 100).astype(np.float16),
            )
        )
    return out


@pytest.fixture
def layout(tmp_path):
    return StorageLayout(tmp_path / "store")


def test_round_trip_across_shards_with_filters(layout):
    store, seqs = LatentStore(layout), make_seqs(10)
    paths = store.write("tiny", "v1", seqs, shard_size=3)
    assert [p.name for p in paths] == [f"shard-0000{i}.parquet" for i in range(4)]
    back = store.read("tiny", "v1")
    assert back == seqs  # fields, spans, token ids and fp16 tensors bit for bit
    assert all(b.H.dtype == np.float16 for b in back)
    assert {s.cot_id for s in store.read("tiny", "v1", split="val", is_valid=True)} == {
        s.cot_id for s in seqs if s.split == "val" and s.is_valid
    }
    assert {s.cot_id for s in store.read("tiny", "v1", domain="code")} == {s.cot_id for s in seqs if s.domain == "code"}
    assert store.count("tiny", "v1") == 10 and store.hidden_size("tiny", "v1") == 8
    assert store.read("tiny", "v1", with_tensors=False)[0].H is None


def test_guards(layout):
    store, seqs = LatentStore(layout), make_seqs(4)
    store.write("tiny", "v1", seqs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        store.write("tiny", "v1", seqs)
    store.write("tiny", "v1", seqs[:1], overwrite=True)
    assert store.count("tiny", "v1") == 1
    store.write("tiny", "v1", seqs[1:3], append=True)
    assert [s.cot_id for s in store.read("tiny", "v1")] == ["c0", "c1", "c2"]
    with pytest.raises(ValueError, match="one width per set"):
        store.write("tiny", "v2", make_seqs(1, hidden=8) + make_seqs(1, hidden=4))
    bad = make_seqs(1)[0]
    bad.H = bad.H[:, :3]
    with pytest.raises(ValueError, match="expected"):
        store.write("tiny", "v3", [bad])
    with pytest.raises(ValueError, match="may only use"):
        layout.latents_dir("../etc", "v1")
    with pytest.raises(ValueError, match="only local folders"):
        StorageLayout("s3://bucket/x")
    assert StorageLayout(f"file://{layout.root}").root == layout.root


def test_killed_writer_never_leaves_a_shard_readers_take_as_whole(tmp_path):
    from tests.core.store.writer_script import PER_SHARD, STEPS

    root = tmp_path / "store"
    layout, store = StorageLayout(root), LatentStore(StorageLayout(root))
    rng = random.Random(0)
    for trial in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "writer_script.py"), str(root)], cwd=Path(__file__).parents[3]
        )
        before, deadline = store.count("kill", "v1"), time.monotonic() + 120
        while store.count("kill", "v1") == before and time.monotonic() < deadline:  # writing has started
            time.sleep(0.05)
        time.sleep(rng.random() * 0.5)  # then kill at a random point, usually mid-shard
        proc.kill()
        proc.wait()
        seqs = store.read("kill", "v1")
        assert len(seqs) % PER_SHARD == 0, f"trial {trial}: a partial shard was read"
        for s in seqs:
            shard, j = (int(x) for x in s.cot_id[1:].split("-"))
            assert s.H.shape == (STEPS, 576)
            assert float(s.H[0, 0]) == (shard * PER_SHARD + j) % 1000
    folder = layout.latents_dir("kill", "v1")
    assert store.count("kill", "v1") > 0
    # the next writer removes leftovers of interrupted writes
    store.write("kill", "v1", [], append=True)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_duckdb_index_answers_sql(layout):
    store = LatentStore(layout)
    store.write("tiny", "v1", make_seqs(6))
    store.write("other", "v2", make_seqs(3, tag="other"))
    p = Problem.create(domain="math", source="x", statement="2+2?", answer_gold="4")
    write_records([p], layout.problems_path("v1"))
    write_records(
        [
            ChainOfThought(
                cot_id="g", problem_id=p.problem_id, steps=["2+2=4"], final_answer="4", is_valid=True, origin="gold"
            )
        ],
        layout.cots_path("v1"),
    )
    db = build_index(layout)
    assert db.exists()
    rows = query(layout, "SELECT llm_tag, dataset_version, count(*) AS n FROM latents GROUP BY ALL ORDER BY llm_tag")
    assert rows == [
        {"llm_tag": "other", "dataset_version": "v2", "n": 3},
        {"llm_tag": "tiny", "dataset_version": "v1", "n": 6},
    ]
    valid = query(
        layout, "SELECT count(*) AS n FROM latents WHERE llm_tag = ? AND is_valid AND domain = 'math'", ["tiny"]
    )
    assert valid[0]["n"] == sum(s.is_valid and s.domain == "math" for s in make_seqs(6))
    assert counts_by(layout, "problems", "dataset_version", "domain") == [
        {"dataset_version": "v1", "domain": "math", "n": 1}
    ]
    assert counts_by(layout, "cots", "is_valid") == [{"is_valid": True, "n": 1}]
    assert counts_by(layout, "student_chains") == [{"n": 0}]  # empty view before anything is sampled


def test_latest_pointer_publish_and_rollback(layout):
    assert read_latest_checkpoint(layout, "tiny") is None
    publish_latest_checkpoint(layout, "tiny", "v1", "run1", {"val": 0.5})
    publish_latest_checkpoint(layout, "tiny", "v1", "run2", {"val": 0.4})
    assert read_latest_checkpoint(layout, "tiny")["run_id"] == "run2"
    back = rollback_latest(layout, "tiny")
    assert back["run_id"] == "run1" and back["meta"]["rolled_back_from"] == "run2"
    assert read_latest_checkpoint(layout, "tiny")["path"].endswith("run1/best")

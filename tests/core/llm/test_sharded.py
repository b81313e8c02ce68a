"""Shard planning and the staged commit of parallel extraction (real shard files, no LLM)."""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.llm.sharded import extraction_chunk, parse_range, plan_shards, split_shards
from rjepa_core.schemas import LatentSequence
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.shards import write_shard


def _seqs(n: int, hidden: int = 8, start: int = 0) -> list[LatentSequence]:
    rng = np.random.default_rng(start)
    return [
        LatentSequence(
            cot_id=f"c{start + i}",
            problem_id="p",
            llm_tag="t",
            layer_idx=-2,
            hidden_size=hidden,
            num_steps=2,
            step_spans=[(0, 1), (1, 2)],
            token_ids=[1, 2],
            H=rng.normal(size=(2, hidden)).astype(np.float16),
        )  # fmt: skip
        for i in range(n)
    ]


def test_shards_cover_every_chain_once_and_workers_get_disjoint_ranges():
    plan = plan_shards(50, 8)
    assert [len(r) for r in plan] == [8] * 6 + [2]
    assert [i for r in plan for i in r] == list(range(50))
    for workers in (1, 2, 3, 7, 20):
        ranges = split_shards(len(plan), workers)
        assert [k for r in ranges for k in r] == list(range(len(plan)))  # contiguous, disjoint, complete
        assert len(ranges) == min(workers, len(plan)) and all(len(r) for r in ranges)
    assert split_shards(0, 3) == []


def test_extraction_chunks_never_straddle_shards():
    assert extraction_chunk(1024) == 64 and extraction_chunk(8) == 8 and extraction_chunk(64) == 64
    for bad in (100, 65, 0, -3):
        with pytest.raises(ValueError, match="shard_size"):
            extraction_chunk(bad)
    assert parse_range("2:5") == range(2, 5)
    for bad in ("5:2", "a:b", "3", "-1:2"):
        with pytest.raises(ValueError, match="shard range"):
            parse_range(bad)


def test_commit_staged_swaps_in_a_complete_set_and_refuses_a_partial_one(tmp_path):
    layout = StorageLayout(tmp_path)
    store = LatentStore(layout)
    store.write("t", "v1", _seqs(3, start=100))  # the old set
    staging = layout.latents_dir("t", "v1").parent / ".v1.shards-test"
    staging.mkdir()
    write_shard(staging, 0, _seqs(4))
    with pytest.raises(RuntimeError, match=r"missing shards \[1\]"):
        store.commit_staged("t", "v1", staging, [4, 2])
    assert [s.cot_id for s in store.read("t", "v1")] == ["c100", "c101", "c102"]  # the old set is kept
    write_shard(staging, 1, _seqs(3, start=4))
    with pytest.raises(RuntimeError, match=r"wrong sizes \[1\]"):
        store.commit_staged("t", "v1", staging, [4, 2])
    write_shard(staging, 1, _seqs(2, start=4))
    store.commit_staged("t", "v1", staging, [4, 2])
    assert [s.cot_id for s in store.read("t", "v1")] == [f"c{i}" for i in range(6)]
    assert not staging.exists() and store.verify("t", "v1") == []

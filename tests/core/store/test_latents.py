"""LatentStore on real files: round trip, guards, and the states a crashed writer can leave."""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest

from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.core.store.factories import make_seqs


@pytest.fixture
def store(tmp_path):
    return LatentStore(StorageLayout(tmp_path / "store"))


def folder(store, version="v1"):
    return store.layout.latents_dir("tiny", version)


def test_round_trip_across_shards(store):
    seqs = make_seqs(10)
    paths = store.write("tiny", "v1", seqs, shard_size=3)
    assert [p.name for p in paths] == [f"shard-0000{i}.parquet" for i in range(4)]
    assert sorted(p.name for p in folder(store).iterdir()) == sorted(
        [f"shard-0000{i}.{ext}" for i in range(4) for ext in ("parquet", "safetensors")]
    )
    back = store.read("tiny", "v1")
    assert back == seqs  # every field, spans, token ids and the fp16 tensors bit for bit
    assert all(b.H.dtype == np.float16 and b.H.flags.writeable for b in back)
    assert back[3].step_spans == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert store.count("tiny", "v1") == 10 and store.hidden_size("tiny", "v1") == 8
    assert [p.name for p in store.iter_shards("tiny", "v1")] == [p.name for p in paths]
    assert store.verify("tiny", "v1") == []


def test_filters_lazy_reads_and_stats(store):
    seqs = make_seqs(10)
    store.write("tiny", "v1", seqs, shard_size=3)
    got = store.read("tiny", "v1", split="val", is_valid=True)
    assert got == [s for s in seqs if s.split == "val" and s.is_valid] and got
    assert store.read("tiny", "v1", domain="code") == [s for s in seqs if s.domain == "code"]
    assert store.read("tiny", "v1", domain="logic") == []
    bare = store.read("tiny", "v1", with_tensors=False)
    assert [b.cot_id for b in bare] == [s.cot_id for s in seqs] and all(b.H is None for b in bare)
    lazy = store.read("tiny", "v1", memmap=True)
    assert lazy == seqs and not lazy[0].H.flags.writeable  # zero-copy views of the files
    stats = store.stats("tiny", "v1")
    assert stats["num_sequences"] == 10 and stats["num_shards"] == 4 and stats["hidden_size"] == 8
    assert stats["num_steps"] == sum(s.num_steps for s in seqs)
    assert stats["num_valid"] == 5 and stats["splits"] == '{"test": 3, "train": 4, "val": 3}'
    assert stats["bytes"] == sum(p.stat().st_size for p in folder(store).iterdir())
    assert store.read("tiny", "v9") == [] and store.count("tiny", "v9") == 0 and store.hidden_size("tiny", "v9") is None


def test_one_llm_and_one_width_per_set_and_checked_shapes(store):
    with pytest.raises(ValueError, match="one width per set"):
        store.write("tiny", "v1", make_seqs(1, hidden=8) + make_seqs(1, hidden=4, seed=1))
    with pytest.raises(ValueError, match="comes from llm 'other'"):
        store.write("tiny", "v1", make_seqs(1, tag="other"))
    bad = make_seqs(2)[1]
    bad.H = bad.H[:, :3]
    with pytest.raises(ValueError, match="expected"):
        store.write("tiny", "v1", [bad])
    assert store.count("tiny", "v1") == 0
    assert [p.name for p in folder(store).parent.iterdir()] == [".v1.lock"]  # no half-built set left behind
    store.write("tiny", "v1", make_seqs(2))
    with pytest.raises(ValueError, match="one width per set"):  # an append must match the stored width
        store.write("tiny", "v1", make_seqs(1, hidden=4, seed=1), append=True)


def test_overwrite_append_and_start_shard(store):
    a, b = make_seqs(4), make_seqs(5, seed=1)
    store.write("tiny", "v1", a, shard_size=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        store.write("tiny", "v1", b)
    with pytest.raises(ValueError, match="one or the other"):
        store.write("tiny", "v1", b, overwrite=True, append=True)
    store.write("tiny", "v1", b[:1], overwrite=True)
    assert store.read("tiny", "v1") == b[:1]
    paths = store.write("tiny", "v1", b[1:3], append=True, shard_size=1)
    assert [p.name for p in paths] == ["shard-00001.parquet", "shard-00002.parquet"]
    assert store.read("tiny", "v1") == b[:3]
    paths = store.write("tiny", "v1", b[3:], start_shard=10, shard_size=1)  # e.g. a parallel extractor's range
    assert [p.name for p in paths] == ["shard-00010.parquet", "shard-00011.parquet"]
    assert store.read("tiny", "v1") == b
    with pytest.raises(FileExistsError, match="already exists"):
        store.write("tiny", "v1", a[:1], start_shard=2)
    assert store.read("tiny", "v1") == b


def test_failed_overwrite_keeps_the_old_set(store):
    old = make_seqs(4)
    store.write("tiny", "v1", old, shard_size=2)

    def broken():
        yield from make_seqs(5, seed=1)
        raise RuntimeError("extraction crashed")

    with pytest.raises(RuntimeError, match="extraction crashed"):
        store.write("tiny", "v1", broken(), overwrite=True, shard_size=2)
    assert store.read("tiny", "v1") == old
    assert sorted(p.name for p in folder(store).parent.iterdir()) == [".v1.lock", "v1"]


def test_debris_of_a_killed_writer_is_ignored_then_cleaned(store):
    seqs = make_seqs(6)
    store.write("tiny", "v1", seqs, shard_size=2)
    d = folder(store)
    (d / ".shard-00003.safetensors.x1.tmp").write_bytes(b"half a tensor")
    (d / ".shard-00003.parquet.x2.tmp").write_bytes(b"PAR1")
    (d / "shard-00003.safetensors").write_bytes((d / "shard-00000.safetensors").read_bytes())  # no parquet yet
    assert store.read("tiny", "v1") == seqs and store.count("tiny", "v1") == 6
    store.write("tiny", "v1", [], append=True)  # the next writer cleans up
    assert sorted(p.name for p in d.iterdir()) == sorted(
        f"shard-0000{i}.{e}" for i in range(3) for e in ("parquet", "safetensors")
    )


def test_a_shard_with_a_wrong_tensor_file_is_not_taken_as_whole(store):
    seqs = make_seqs(6)
    store.write("tiny", "v1", seqs, shard_size=2)
    st = folder(store) / "shard-00001.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[:-10])  # truncated: the recorded size no longer matches
    assert store.read("tiny", "v1") == seqs[:2] + seqs[4:]
    # readers skip it, so the integrity check must say the set lacks a committed shard
    assert store.verify("tiny", "v1") == [
        "shard-00001.parquet: committed but its tensor file is missing, unreadable or not the size recorded at commit"
    ]
    st.write_bytes(data[:-2] + bytes([data[-2] ^ 0xFF, data[-1]]))  # same size, different content
    assert store.verify("tiny", "v1") == ["shard-00001.safetensors: sha256 differs from the one recorded at commit"]


def test_interrupted_swap_is_read_from_the_parked_set_then_repaired(store):
    old = make_seqs(4)
    store.write("tiny", "v1", old, shard_size=2)
    d = folder(store)
    os.replace(d, d.parent / ".v1.old")  # killed between the two renames of a swap
    (d.parent / ".v1.new").mkdir()
    assert store.read("tiny", "v1") == old
    store.write("tiny", "v1", make_seqs(1, seed=3), append=True)
    assert [s.cot_id for s in store.read("tiny", "v1")] == [s.cot_id for s in old] + ["c3-0"]
    assert sorted(p.name for p in d.parent.iterdir()) == [".v1.lock", "v1"]


def test_replacing_a_set_waits_for_no_one_but_appenders_share(store):
    store.write("tiny", "v1", make_seqs(2))
    lock = folder(store).parent / ".v1.lock"
    with open(lock, "a+") as f:  # another live appender holds the writer lock shared
        fcntl.flock(f, fcntl.LOCK_SH)
        with pytest.raises(RuntimeError, match="another process is writing"):
            store.write("tiny", "v1", make_seqs(2, seed=1), overwrite=True)
        (folder(store) / ".shard-00009.safetensors.live.tmp").write_bytes(b"in flight")
        store.write("tiny", "v1", make_seqs(1, seed=2), append=True)
        assert (folder(store) / ".shard-00009.safetensors.live.tmp").exists()  # not another writer's to remove
    assert store.count("tiny", "v1") == 3


def test_question_latents_round_trip_per_sequence(store):
    seqs = make_seqs(9)
    rng = np.random.default_rng(5)
    for i, s in enumerate(seqs):
        if i % 3:  # some sequences carry no question latent
            s.Q = (rng.standard_normal(8) * 1000).astype(np.float16)
    store.write("tiny", "v1", seqs, shard_size=4)
    got = {s.cot_id: s for s in store.read("tiny", "v1")}
    for s in seqs:
        assert got[s.cot_id] == s  # H and Q bit-exact, None stays None
        assert (got[s.cot_id].Q is None) == (s.Q is None)
    # filtered reads keep each kept sequence's own question latent
    for s in store.read("tiny", "v1", split="val", memmap=True):
        want = next(x for x in seqs if x.cot_id == s.cot_id)
        assert (s.Q is None and want.Q is None) or np.array_equal(s.Q, want.Q)
    # a set written without question latents reads back with Q None
    store.write("tiny", "v2", make_seqs(3))
    assert all(s.Q is None for s in store.read("tiny", "v2"))
    assert store.verify("tiny", "v1") == []

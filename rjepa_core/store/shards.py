"""One latent shard on disk: a safetensors tensor file plus a parquet file that commits it.

    >>> pq_path = write_shard(folder, 3, seqs)               # folder/shard-00003.{safetensors,parquet}
    >>> shard_info(pq_path)["rows"]                          # None if the shard is not complete
    >>> H = open_rows(pq_path, memmap=True)                  # (rows, hidden) float16, zero-copy

`shard-NNNNN.safetensors` holds a float16 tensor "H" of shape [rows, hidden]: every step of every
sequence of the shard, concatenated; when the sequences carry question latents, also "Q" of shape
[sequences, hidden] (one per sequence, in parquet row order) and "Q_present" (uint8, 0 where a
sequence has none). `shard-NNNNN.parquet` has one row per sequence
(`LatentSequence.ARROW_SCHEMA` + `row_offset` into H) and, in its key-value metadata, the tensor
file's byte size and sha256.

Commit protocol: (1) remove any parquet of that number (un-commit), (2) write the tensor file to a
hidden temp name and rename it, (3) write the parquet file to a hidden temp name and rename it LAST.
A parquet file is therefore the commit marker: a reader takes a shard only when its parquet exists
and the tensor file beside it has the recorded size. Temp names start with '.', so no
`shard-*.parquet` glob ever matches them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.numpy import save_file

from rjepa_core.io import atomic_path
from rjepa_core.schemas import LatentSequence

SHARD_SCHEMA = LatentSequence.ARROW_SCHEMA.append(pa.field("row_offset", pa.int64()))
META_KEY = b"rjepa.shard"  # parquet key-value metadata entry holding the commit record (JSON)
TENSOR = "H"
QUESTION, QUESTION_PRESENT = "Q", "Q_present"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_index(path: Path) -> int:
    """5 for `.../shard-00005.parquet`."""
    return int(path.name.split(".")[0].split("-")[1])


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(folder: Path, index: int, seqs: list[LatentSequence]) -> Path:
    """Write and commit one shard; returns its parquet path. `seqs` must already be checked."""
    name = shard_name(index)
    st_path, pq_path = folder / f"{name}.safetensors", folder / f"{name}.parquet"
    # Un-commit first: an old parquet beside a new tensor file of equal size would pass the size check.
    with contextlib.suppress(FileNotFoundError):
        pq_path.unlink()
    H = np.concatenate([np.asarray(s.H, dtype=np.float16) for s in seqs], axis=0)  # (rows, hidden)
    offsets = np.cumsum([0] + [s.num_steps for s in seqs[:-1]]).tolist()
    tensors = {TENSOR: np.ascontiguousarray(H)}
    if any(s.Q is not None for s in seqs):
        Q = np.zeros((len(seqs), H.shape[1]), dtype=np.float16)  # (sequences, hidden)
        for i, s in enumerate(seqs):
            if s.Q is not None:
                Q[i] = np.asarray(s.Q, dtype=np.float16)
        tensors[QUESTION] = Q
        tensors[QUESTION_PRESENT] = np.array([s.Q is not None for s in seqs], dtype=np.uint8)  # (sequences,)
    with atomic_path(st_path) as tmp:
        save_file(tensors, tmp)
        info = {
            "tensor_file": st_path.name,
            "bytes": Path(tmp).stat().st_size,
            "sha256": sha256_file(tmp),
            "rows": int(H.shape[0]),
            "hidden_size": int(H.shape[1]),
            "sequences": len(seqs),
        }
    rows = [{**s.to_row(), "row_offset": int(o)} for s, o in zip(seqs, offsets, strict=True)]
    table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA).replace_schema_metadata(
        {META_KEY: json.dumps(info).encode()}
    )
    with atomic_path(pq_path) as tmp:  # the commit marker: renamed into place last
        pq.write_table(table, tmp)
    return pq_path


def shard_info(pq_path: Path) -> dict[str, Any] | None:
    """The shard's commit record, or None when the shard is not complete (never raises on debris)."""
    try:
        meta = pq.read_schema(pq_path).metadata or {}
        info = json.loads(meta.get(META_KEY) or b"{}")
        st_size = pq_path.with_suffix(".safetensors").stat().st_size
    except (OSError, ValueError, pa.ArrowException):
        return None
    if not info or st_size != info.get("bytes"):
        return None
    return info


def read_rows(pq_path: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The shard's per-sequence rows (all columns, or only `columns`)."""
    return pq.read_table(pq_path, schema=SHARD_SCHEMA, columns=columns).to_pylist()


def _data_offset(st_path: Path) -> tuple[int, tuple[int, int]]:
    """Byte offset and shape of tensor H inside a safetensors file (8-byte header length + JSON header)."""
    with open(st_path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    entry = header[TENSOR]
    if entry["dtype"] != "F16":
        raise ValueError(f"{st_path}: tensor {TENSOR} is {entry['dtype']}, expected F16")
    rows, hidden = entry["shape"]
    return 8 + n + entry["data_offsets"][0], (rows, hidden)


def open_questions(pq_path: Path) -> list[np.ndarray | None] | None:
    """Question latents of a shard's sequences in parquet row order (None per missing one), or None if it has none."""
    with safe_open(str(pq_path.with_suffix(".safetensors")), framework="numpy") as f:
        if QUESTION not in f.keys():
            return None
        Q, present = f.get_tensor(QUESTION), f.get_tensor(QUESTION_PRESENT)  # (sequences, hidden), (sequences,)
    return [Q[i] if present[i] else None for i in range(Q.shape[0])]


def open_rows(pq_path: Path, memmap: bool = False):
    """H of a shard as (rows, hidden) float16.

    memmap=False: `safe_open(framework="numpy")` memory-maps the file and copies H out (a normal,
    writable array). memmap=True: a read-only `np.memmap` on H's data offset, so rows are paged in
    only when touched (for sets larger than RAM).
    """
    st_path = pq_path.with_suffix(".safetensors")
    if memmap:
        offset, shape = _data_offset(st_path)
        if shape[0] == 0:  # np.memmap refuses an empty map
            return np.zeros(shape, dtype=np.float16)
        return np.memmap(st_path, dtype="<f2", mode="r", offset=offset, shape=shape)
    with safe_open(str(st_path), framework="numpy") as f:
        return f.get_tensor(TENSOR)

"""Latent shards (SPEC §4): parquet metadata + one safetensors tensor per shard, written atomically.

    >>> store = LatentStore(StorageLayout("/data/rjepa"))
    >>> store.write("smollm2-135m", "v1", seqs, shard_size=1024, overwrite=True)
    >>> train = store.read("smollm2-135m", "v1", split="train", is_valid=True)

A shard is `shard-NNNNN.safetensors` (one float16 tensor "H" of shape [rows, hidden]: every step of
every sequence of the shard, concatenated) and `shard-NNNNN.parquet` (one row per sequence with its
`row_offset` into H). The safetensors file is renamed into place first and the parquet file LAST:
the parquet file is the commit marker, and it records the tensor file's size and sha256, so a
reader never takes a half-written shard as whole. Reads memory-map the tensor file
(`safetensors.safe_open(framework="numpy")`), so only the rows asked for are paged in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.numpy import save_file

from rjepa_core.io import atomic_path, is_temp_file
from rjepa_core.schemas import LatentSequence
from rjepa_core.store.layout import StorageLayout

SHARD_SCHEMA = LatentSequence.ARROW_SCHEMA.append(pa.field("row_offset", pa.int64()))
META_KEY = b"rjepa.shard"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class LatentStore:
    def __init__(self, layout: StorageLayout):
        self.layout = layout

    # ---- writing ----------------------------------------------------------------------------
    def write(
        self,
        llm_tag: str,
        version: str,
        seqs: Iterable[LatentSequence],
        shard_size: int = 1024,
        overwrite: bool = False,
        append: bool = False,
    ) -> list[Path]:
        """Write sequences as shards; `append` continues after existing shards, `overwrite` replaces them."""
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        final = self.layout.latents_dir(llm_tag, version)
        existing = self._committed(final)
        if existing and not (overwrite or append):
            raise FileExistsError(
                f"{final} already holds {len(existing)} shards: pass overwrite=True to replace them or append=True"
            )
        if overwrite:  # build the new set aside, then swap folders (readers see old or new, not a mix)
            target = final.parent / f".{final.name}.new"
            shutil.rmtree(target, ignore_errors=True)
            start = 0
        else:
            target = final
            start = (int(existing[-1].stem.split("-")[1]) + 1) if existing else 0
        target.mkdir(parents=True, exist_ok=True)
        self._clean_temp(target)
        written, batch, width = [], [], None
        for s in seqs:
            s.check()
            if s.llm_tag != llm_tag:
                raise ValueError(f"sequence {s.cot_id} is from llm {s.llm_tag!r}, not {llm_tag!r}")
            width = width or s.hidden_size
            if s.hidden_size != width:
                raise ValueError(f"sequence {s.cot_id} has width {s.hidden_size}, others {width}: one width per set")
            batch.append(s)
            if len(batch) == shard_size:
                written.append(self._write_shard(target, start + len(written), batch))
                batch = []
        if batch:
            written.append(self._write_shard(target, start + len(written), batch))
        if overwrite:
            old = final.parent / f".{final.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                os.replace(final, old)
            os.replace(target, final)
            shutil.rmtree(old, ignore_errors=True)
            written = [final / p.name for p in written]
        return written

    def _write_shard(self, folder: Path, index: int, seqs: list[LatentSequence]) -> Path:
        name = f"shard-{index:05d}"
        H = np.concatenate([s.H.astype(np.float16, copy=False) for s in seqs], axis=0)  # (rows, hidden)
        offsets = np.cumsum([0] + [s.num_steps for s in seqs[:-1]]).tolist()
        st_path, pq_path = folder / f"{name}.safetensors", folder / f"{name}.parquet"
        with atomic_path(st_path) as tmp:
            save_file({"H": np.ascontiguousarray(H)}, tmp)
        rows = [{**s.to_row(), "row_offset": int(o)} for s, o in zip(seqs, offsets, strict=True)]
        info = {
            "tensor_file": st_path.name,
            "bytes": st_path.stat().st_size,
            "sha256": _sha256(st_path),
            "rows": int(H.shape[0]),
            "hidden_size": int(H.shape[1]),
            "sequences": len(seqs),
        }
        table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA).replace_schema_metadata(
            {META_KEY: json.dumps(info).encode()}
        )
        with atomic_path(pq_path) as tmp:  # the commit marker: written last
            pq.write_table(table, tmp)
        return pq_path

    @staticmethod
    def _clean_temp(folder: Path) -> None:
        for p in folder.iterdir():
            if is_temp_file(p):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    # ---- reading ----------------------------------------------------------------------------
    @staticmethod
    def _shard_info(pq_path: Path) -> dict | None:
        """The shard's commit record, or None when it is not complete (missing or wrong tensor file)."""
        try:
            meta = pq.read_schema(pq_path).metadata or {}
        except (OSError, pa.ArrowInvalid):
            return None
        info = json.loads(meta.get(META_KEY, b"{}") or b"{}")
        st = pq_path.with_suffix(".safetensors")
        if not info or not st.exists() or st.stat().st_size != info.get("bytes"):
            return None
        return info

    def _committed(self, folder: Path) -> list[Path]:
        if not folder.exists():
            return []
        return sorted(p for p in folder.glob("shard-*.parquet") if self._shard_info(p) is not None)

    def iter_shards(self, llm_tag: str, version: str) -> Iterator[Path]:
        yield from self._committed(self.layout.latents_dir(llm_tag, version))

    def read(
        self,
        llm_tag: str,
        version: str,
        *,
        split: str | None = None,
        is_valid: bool | None = None,
        domain: str | None = None,
        with_tensors: bool = True,
    ) -> list[LatentSequence]:
        out: list[LatentSequence] = []
        for pq_path in self.iter_shards(llm_tag, version):
            rows = pq.read_table(pq_path, schema=SHARD_SCHEMA).to_pylist()
            keep = [
                r
                for r in rows
                if (split is None or r["split"] == split)
                and (is_valid is None or r["is_valid"] == is_valid)
                and (domain is None or r["domain"] == domain)
            ]
            if not keep:
                continue
            handle = safe_open(str(pq_path.with_suffix(".safetensors")), framework="numpy") if with_tensors else None
            H_all = handle.get_slice("H") if handle is not None else None
            for r in keep:
                off = r.pop("row_offset")
                r["step_spans"] = [tuple(x) for x in r["step_spans"]]
                seq = LatentSequence(**r)
                if H_all is not None:
                    seq.H = np.asarray(H_all[off : off + seq.num_steps])
                out.append(seq)
        return out

    def count(self, llm_tag: str, version: str) -> int:
        return sum(pq.read_metadata(p).num_rows for p in self.iter_shards(llm_tag, version))

    def hidden_size(self, llm_tag: str, version: str) -> int | None:
        for p in self.iter_shards(llm_tag, version):
            return int(self._shard_info(p)["hidden_size"])
        return None

    def stats(self, llm_tag: str, version: str) -> dict:
        shards = list(self.iter_shards(llm_tag, version))
        seqs = self.read(llm_tag, version, with_tensors=False)
        return {
            "num_sequences": len(seqs),
            "num_steps": sum(s.num_steps for s in seqs),
            "num_shards": len(shards),
            "bytes": sum(p.stat().st_size + p.with_suffix(".safetensors").stat().st_size for p in shards),
            "num_valid": sum(s.is_valid for s in seqs),
            "splits": json.dumps(dict(Counter(s.split for s in seqs))),
            "origins": json.dumps(dict(Counter(s.origin.split(":")[0] for s in seqs))),
        }

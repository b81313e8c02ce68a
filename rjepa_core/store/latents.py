"""Per-LLM latent cache (SPEC §4): sets of shards under latents/<llm_tag>/<version>/.

    >>> store = LatentStore(StorageLayout("/data/rjepa"))
    >>> store.write("smollm2-135m", "v1", seqs, shard_size=1024)                 # a whole set, atomically
    >>> store.write("smollm2-135m", "v1", more, append=True)                     # incremental extraction
    >>> train = store.read("smollm2-135m", "v1", split="train", is_valid=True)  # H: float16 numpy
    >>> store.stats("smollm2-135m", "v1")["num_sequences"]

Shard format and commit protocol: see `rjepa_core.store.shards`. A whole-set write (the default, or
`overwrite=True`) builds its shards in a hidden sibling folder `.<version>.new` and then swaps
folders, so readers see the old set or the new one; an interrupted swap is repaired by the next
writer, and readers fall back to the parked `.<version>.old` meanwhile. Appends commit shard by
shard; several appenders may run at once if they use disjoint `start_shard` ranges. Leftovers of
killed writers (hidden temp files, tensor files without a parquet, a half-built `.new` folder) are
ignored by readers and removed by the next writer that finds no other writer alive.

Reads: by default `safe_open(framework="numpy")` memory-maps each tensor file and copies the
shard's H out; `read(..., memmap=True)` instead returns read-only `np.memmap` views on the data
offset (zero copy, rows paged in when touched).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rjepa_core.io import is_temp_file, notify_commit
from rjepa_core.schemas import LatentSequence
from rjepa_core.store.layout import StorageLayout, natural_key
from rjepa_core.store.shards import (
    open_questions,
    open_rows,
    read_rows,
    sha256_file,
    shard_index,
    shard_info,
    shard_name,
    write_shard,
)


def _aside(folder: Path, kind: str) -> Path:
    """Hidden sibling used during a whole-set write (`.v1.new`) or swap (`.v1.old`)."""
    return folder.parent / f".{folder.name}.{kind}"


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
        start_shard: int | None = None,
    ) -> list[Path]:
        """Write `seqs` as shards of `shard_size` sequences; returns the committed parquet paths.

        Default: a new set (FileExistsError if one exists). `overwrite=True`: replace the set.
        `append=True`: add shards numbered after the last existing one. `start_shard=N`: add shards
        numbered from N (for parallel extraction by shard range); refuses to clobber existing ones.
        """
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if start_shard is not None and start_shard < 0:
            raise ValueError(f"start_shard must be >= 0, got {start_shard}")
        incremental = append or start_shard is not None
        if overwrite and incremental:
            raise ValueError(
                "overwrite=True replaces the whole set; append/start_shard add to it: pass one or the other"
            )
        final = self.layout.latents_dir(llm_tag, version)
        with self._writing(final, exclusive=not incremental):
            existing = {shard_index(p): p for p, _ in self._committed(final)}
            if incremental:
                start = start_shard if start_shard is not None else max(existing, default=-1) + 1
                final.mkdir(parents=True, exist_ok=True)
                return self._write_all(final, start, llm_tag, seqs, shard_size, taken=set(existing))
            if existing and not overwrite:
                raise FileExistsError(
                    f"{final} already holds {len(existing)} shards: pass overwrite=True to replace them "
                    "or append=True to add to them"
                )
            new = _aside(final, "new")
            new.mkdir(parents=True)
            try:
                written = self._write_all(new, 0, llm_tag, seqs, shard_size, taken=set())
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            self._swap(new, final)
        return [final / p.name for p in written]

    @contextlib.contextmanager
    def _writing(self, final: Path, exclusive: bool) -> Iterator[None]:
        """Writer lock on `.<version>.lock`: every writer holds it shared; cleanup needs it alone.

        Appenders with disjoint `start_shard` ranges may run at once, so a writer removes debris only
        when no other writer is alive (the kernel drops a killed writer's lock with the process).
        """
        lock = final.parent / f".{final.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if exclusive:
                    raise RuntimeError(
                        f"another process is writing {final}: wait for it to finish before replacing the set"
                    ) from None
                fcntl.flock(f, fcntl.LOCK_SH)
            else:
                self._recover(final)
                if not exclusive:
                    fcntl.flock(f, fcntl.LOCK_SH)  # let other appenders start
            yield

    def _write_all(
        self, folder: Path, start: int, llm_tag: str, seqs: Iterable[LatentSequence], shard_size: int, taken: set[int]
    ) -> list[Path]:
        written: list[Path] = []
        batch: list[LatentSequence] = []
        width: int | None = None

        def flush() -> None:
            index = start + len(written)
            if index in taken or (folder / f"{shard_name(index)}.parquet").exists():
                raise FileExistsError(
                    f"{folder / shard_name(index)}.parquet already exists: use append=True without start_shard "
                    "to continue after the last shard, or overwrite=True to replace the set"
                )
            written.append(write_shard(folder, index, batch))
            batch.clear()

        for s in seqs:
            s.check()
            if s.llm_tag != llm_tag:
                raise ValueError(
                    f"sequence {s.cot_id} comes from llm {s.llm_tag!r}, not {llm_tag!r}: write each llm apart"
                )
            if width is None:
                width = self._width_of(folder, s.hidden_size) if taken else s.hidden_size
            if s.hidden_size != width:
                raise ValueError(
                    f"sequence {s.cot_id} has hidden size {s.hidden_size} but the set has {width}: "
                    "one width per set (latents of one llm_tag and layer)"
                )
            batch.append(s)
            if len(batch) == shard_size:
                flush()
        if batch:
            flush()
        return written

    def _width_of(self, folder: Path, width: int) -> int:
        """The width of the shards already in `folder` (appends must match it), else `width`."""
        for _, info in self._committed(folder):
            return int(info["hidden_size"])
        return width

    def commit_staged(self, llm_tag: str, version: str, staging: Path, expected: list[int]) -> list[Path]:
        """Make the shards that parallel workers committed into `staging` the set, in one swap.

        `expected[k]` is the number of sequences shard k must hold; anything missing, extra, incomplete
        or of mixed width refuses the commit (the old set stays) with what to rerun.
        """
        staging, final = Path(staging), self.layout.latents_dir(llm_tag, version)
        found = {shard_index(p): info for p, info in self._committed(staging)}
        missing = [k for k in range(len(expected)) if k not in found]
        extra = sorted(set(found) - set(range(len(expected))))
        wrong = [k for k, n in enumerate(expected) if k in found and int(found[k]["sequences"]) != n]
        widths = {int(info["hidden_size"]) for info in found.values()}
        if missing or extra or wrong or len(widths) > 1:
            raise RuntimeError(
                f"{staging} is not a complete set for {llm_tag}/{version}: missing shards {missing}, unexpected "
                f"{extra}, wrong sizes {wrong}, widths {sorted(widths)}; rerun the workers of those shards"
            )
        with self._writing(final, exclusive=True):
            self._swap(staging, final)
        return [final / p.name for p, _ in self._committed(final)]

    @staticmethod
    def _swap(new: Path, final: Path) -> None:
        old = _aside(final, "old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(new, final)  # a crash between the two renames is repaired by _recover
        shutil.rmtree(old, ignore_errors=True)
        notify_commit(final)

    @staticmethod
    def _recover(final: Path) -> None:
        """Undo what killed writers left: a half swap, a half-built set, temp and orphan tensor files."""
        old, new = _aside(final, "old"), _aside(final, "new")
        if not final.exists() and old.is_dir():
            os.replace(old, final)  # the new set never became visible: the old one is still the truth
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        if not final.is_dir():
            return
        for p in final.iterdir():
            orphan = p.suffix == ".safetensors" and not p.with_suffix(".parquet").exists()
            if is_temp_file(p) or orphan:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    # ---- reading ----------------------------------------------------------------------------
    def _folder(self, llm_tag: str, version: str) -> Path | None:
        final = self.layout.latents_dir(llm_tag, version)
        if final.is_dir():
            return final
        old = _aside(final, "old")  # a swap is in progress or was interrupted
        return old if old.is_dir() else None

    @staticmethod
    def _committed(folder: Path | None) -> list[tuple[Path, dict[str, Any]]]:
        if folder is None or not folder.is_dir():
            return []
        found = []
        for p in folder.glob("shard-*.parquet"):
            info = shard_info(p)
            if info is not None:
                found.append((p, info))
        return sorted(found, key=lambda x: shard_index(x[0]))

    def iter_shards(self, llm_tag: str, version: str) -> Iterator[Path]:
        """Parquet paths of the complete shards, in shard order."""
        for p, _ in self._committed(self._folder(llm_tag, version)):
            yield p

    def read(
        self,
        llm_tag: str,
        version: str,
        *,
        split: str | None = None,
        is_valid: bool | None = None,
        domain: str | None = None,
        with_tensors: bool = True,
        memmap: bool = False,
    ) -> list[LatentSequence]:
        """Sequences of the complete shards matching the filters, in write order; [] if there are none."""
        out: list[LatentSequence] = []
        for pq_path in self.iter_shards(llm_tag, version):
            rows = read_rows(pq_path)
            keep = [
                (i, r)
                for i, r in enumerate(rows)
                if (split is None or r["split"] == split)
                and (is_valid is None or r["is_valid"] == is_valid)
                and (domain is None or r["domain"] == domain)
            ]
            if not keep:
                continue
            H_all = open_rows(pq_path, memmap=memmap) if with_tensors else None  # (rows, hidden)
            Q_all = open_questions(pq_path) if with_tensors else None
            # Views would pin the whole shard in memory for a few kept rows: copy those instead.
            share = memmap or len(keep) == len(rows)
            for i, r in keep:
                off = r.pop("row_offset")
                seq = LatentSequence(**r)
                if H_all is not None:
                    h = H_all[off : off + seq.num_steps]  # (steps, hidden)
                    seq.H = h if share else np.array(h)
                if Q_all is not None:
                    seq.Q = Q_all[i]
                out.append(seq)
        return out

    def count(self, llm_tag: str, version: str) -> int:
        """Number of sequences in complete shards (reads only the commit records)."""
        return sum(int(info["sequences"]) for _, info in self._committed(self._folder(llm_tag, version)))

    def hidden_size(self, llm_tag: str, version: str) -> int | None:
        for _, info in self._committed(self._folder(llm_tag, version)):
            return int(info["hidden_size"])
        return None

    def stats(self, llm_tag: str, version: str) -> dict[str, Any]:
        """Scalar summary for materialization metadata; breakdowns are JSON text ({"train": 12, ...})."""
        shards = self._committed(self._folder(llm_tag, version))
        cols = ["num_steps", "is_valid", "split", "domain", "origin"]
        rows = [r for p, _ in shards for r in read_rows(p, cols)]
        return {
            "num_sequences": len(rows),
            "num_steps": sum(r["num_steps"] for r in rows),
            "num_shards": len(shards),
            "bytes": sum(p.stat().st_size + p.with_suffix(".safetensors").stat().st_size for p, _ in shards),
            "num_valid": sum(bool(r["is_valid"]) for r in rows),
            "hidden_size": int(shards[0][1]["hidden_size"]) if shards else None,
            "splits": json.dumps(dict(sorted(Counter(r["split"] for r in rows).items()))),
            "domains": json.dumps(dict(sorted(Counter(r["domain"] for r in rows).items()))),
            "origins": json.dumps(dict(sorted(Counter(r["origin"].split(":")[0] for r in rows).items()))),
        }

    def fingerprint(self, llm_tag: str, version: str) -> str:
        """16 hex digits naming the set's content (its shards' commit records); changes whenever a shard does."""
        h = hashlib.sha256()
        for p, info in self._committed(self._folder(llm_tag, version)):
            h.update(f"{p.name}:{info['sha256']}:{info['sequences']};".encode())
        return h.hexdigest()[:16]

    def sets(self) -> list[tuple[str, str]]:
        """(llm_tag, version) of every latent set in the store (hidden staging folders excluded)."""
        base = self.layout.root / "latents"
        if not base.is_dir():
            return []
        found = [(p.parent.name, p.name) for p in base.glob("*/*") if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=lambda tv: (tv[0], natural_key(tv[1])))

    def verify(self, llm_tag: str, version: str) -> list[str]:
        """Full integrity check (sha256 and row counts of every complete shard); the problems found, [] if none.

        A shard whose parquet commit marker is there but whose tensor file is missing or of another size than
        recorded (readers skip such a shard, so the set silently lacks its sequences) is reported too.
        """
        folder = self._folder(llm_tag, version)
        problems = [
            f"{p.name}: committed but its tensor file is missing, unreadable or not the size recorded at commit"
            for p in sorted(folder.glob("shard-*.parquet") if folder is not None else [])
            if shard_info(p) is None
        ]
        for p, info in self._committed(self._folder(llm_tag, version)):
            st = p.with_suffix(".safetensors")
            if sha256_file(st) != info["sha256"]:
                problems.append(f"{st.name}: sha256 differs from the one recorded at commit")
                continue
            steps = sum(r["num_steps"] for r in read_rows(p, ["num_steps"]))
            shape = open_rows(p, memmap=True).shape
            if shape != (info["rows"], info["hidden_size"]) or steps != info["rows"]:
                problems.append(f"{p.name}: {steps} steps for tensor rows {shape}, recorded {info['rows']}")
        return problems

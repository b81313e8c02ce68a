"""Resumable latent extraction of one partition: a killed run's committed shards are kept, not recomputed.

    >>> fp = inputs_fingerprint(layout, student.spec, "v1", shard_size=1024, device="cpu")
    >>> with resumable_staging(layout, "smollm2-135m", "v1", fp) as staging:
    ...     kept = staged_shards(staging, plan_shards(n, 1024))                 # shards a killed run committed
    ...     extract_shards(student, problems, cots, range(len(plan)), 1024, staging)  # the others only
    ...     LatentStore(layout).commit_staged("smollm2-135m", "v1", staging, [len(r) for r in plan])

The staging folder `.<version>.resume-<fingerprint>` sits beside the set (readers never look there) and
is named by what decides its shards' content: the partition's input files (problems, gold and student
chains, by sha256), the student's registry entry, the shard size and the device. A run that is killed
(SIGKILL, a lost pod) or fails leaves its committed shards there, each one whole or absent (the
`write_shard` commit protocol); the next run of the same inputs finds the folder, checks every shard in it
against its commit record (sha256 and sequence count), removes debris and extracts only the missing
shards. When the inputs change, the fingerprint changes and the stale folder is removed. The one swap
of `LatentStore.commit_staged` consumes the folder, so a finished run leaves nothing to resume and the
next materialization extracts everything again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from rjepa_core.io import is_temp_file


def inputs_fingerprint(layout, spec, version: str, shard_size: int, device: str = "auto") -> str:
    """16 hex digits naming what a partition's shards are made from (a different value: start over)."""
    h = hashlib.sha256()
    what = {"spec": spec.to_dict(), "version": version, "shard_size": shard_size, "device": str(device)}
    h.update(json.dumps(what, sort_keys=True, default=str).encode())
    from rjepa_core.store.shards import sha256_file

    chains = layout.student_chains_path(spec.llm_tag, version)
    inputs = (layout.problems_path(version), layout.cots_path(version), chains)
    for path in map(Path, inputs):
        h.update(f"{path.name}={sha256_file(path) if path.exists() else '-'};".encode())
    return h.hexdigest()[:16]


def staged_shards(folder: Path, plan: list[range]) -> list[int]:
    """Indices of the planned shards already whole in `folder`: committed, with the planned sequence count
    and the tensor file's sha256 as recorded at commit. Anything else gets extracted again."""
    from rjepa_core.store.shards import sha256_file, shard_info, shard_name

    kept = []
    for k, chains in enumerate(plan):
        pq_path = Path(folder) / f"{shard_name(k)}.parquet"
        info = shard_info(pq_path) if pq_path.exists() else None
        if info is None or int(info["sequences"]) != len(chains):
            continue
        if sha256_file(pq_path.with_suffix(".safetensors")) == info["sha256"]:
            kept.append(k)
    return kept


def _prefix(final: Path) -> str:
    return f".{final.name}.resume-"


@contextlib.contextmanager
def resumable_staging(layout, llm_tag: str, version: str, fingerprint: str) -> Iterator[Path]:
    """The partition's resumable staging folder, held by this process alone while the block runs.

    RuntimeError if another live process holds it (two runs of one partition at once). Staging folders of
    other fingerprints (stale inputs) and debris of killed writers are removed on entry; the folder itself
    is left in place on exit, for `LatentStore.commit_staged` to consume or for the next run to resume.
    """
    final = layout.latents_dir(llm_tag, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / f".{final.name}.resume.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another run is extracting latents of {llm_tag}/{version} (it holds {lock_path}): "
                "wait for it to finish, or stop it and re-materialize (its committed shards are kept)"
            ) from None
        folder = final.parent / f"{_prefix(final)}{fingerprint}"
        for stale in final.parent.glob(f"{_prefix(final)}*"):
            if stale != folder and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        folder.mkdir(exist_ok=True)
        for p in folder.iterdir():
            orphan = p.suffix == ".safetensors" and not p.with_suffix(".parquet").exists()
            if is_temp_file(p) or orphan:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        yield folder


def resume_folders(layout, llm_tag: str, version: str) -> list[Path]:
    """Staging folders an interrupted run left for this partition (the next run resumes from them)."""
    final = layout.latents_dir(llm_tag, version)
    return sorted(p for p in final.parent.glob(f"{_prefix(final)}*") if p.is_dir())

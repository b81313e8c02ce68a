"""Object storage behind `StorageLayout("s3://bucket/prefix")`: a local working copy plus publish/fetch.

    >>> layout = StorageLayout("s3://rjepa/prod")       # pulls what changed into the local cache
    >>> layout.root                                     # the cache folder every writer and reader uses
    PosixPath('/root/.cache/rjepa/s3/rjepa/prod')
    >>> layout.remote.push()                            # publish what changed locally (writers do it for you)

Every artefact is one *unit* (a dataset version, a chain file's folder, a latent set, a checkpoint run,
a decoder, a report folder, a pointer file); `UNIT_DEPTH` says how many path components name one. A
unit is published in two steps: its files go to immutable content-addressed objects
`<prefix>/.rjepa-objects/<unit>/<sha256>/<name>` (uploaded first, skipped when already there), then one
small manifest object `<prefix>/.rjepa-units/<unit>.json` listing them is PUT last. A single PUT is
atomic and S3 is strongly read-after-write consistent (since December 2020; MinIO and moto too), so a
reader sees the previous manifest or the new one, and every object either names exists whole: a publish
interrupted before its manifest PUT changes nothing that readers see. Objects no manifest (current or
previous) names any more are deleted after the swap.

Local writers already commit atomically (rjepa_core.io); each commit calls `push()` (a commit hook,
`rjepa_core.io.add_commit_hook`), which publishes every changed unit with pointer files last, so the
bucket passes through the same states, in the same order, as the local folder. `pull()` fetches units
whose manifest changed (pointers first) into a hidden sibling, checks sizes and sha256, and swaps it in.
Hidden paths (temp files, `.new`/`.old` folders, locks) and the DuckDB index (rebuilt from the mirror) stay
local; shards staged for a parallel commit are the one hidden thing published (`STAGED_SHARD`).
Bucket access, URIs and the errors a user can cause: `rjepa_core.store.s3`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rjepa_core.io import add_commit_hook, atomic_write_json
from rjepa_core.store.s3 import StorageError, cache_dir, explain, make_filesystem, split_uri
from rjepa_core.store.shards import sha256_file

log = logging.getLogger(__name__)

UNITS, OBJECTS, STATE = ".rjepa-units", ".rjepa-objects", ".rjepa-sync"
# Path components that name one unit, by top-level folder; a file above that depth is a unit by itself.
UNIT_DEPTH = {
    "datasets": 2,  # datasets/<version>/
    "chains": 3,  # chains/<llm>/<version>/
    "latents": 3,  # latents/<llm>/<version>/
    "checkpoints": 4,  # checkpoints/<llm>/<version>/<run_id>/ (and checkpoints/<llm>/LATEST.json)
    "decoders": 3,
    "adapters": 2,
    "reports": 3,
    "interactions": 2,  # one file per day
}
DEFAULT_DEPTH = 2
LOCAL_ONLY = {"index.duckdb", "index.duckdb.wal"}  # derived from the mirror; views name local paths
POINTER_NAMES = {"LATEST.json"}  # published after every other unit of a push, fetched before the others of a pull
NO_GRACE = {"interactions"}  # personal data: a publish removes the previous objects at once (deletion requests)
# Shards that extraction steps on other machines commit into a run's hidden staging folder
# (rjepa_core.llm.sharded.start_staging): each file is a unit of its own, so steps never write the same unit.
STAGED_SHARD = re.compile(r"latents/[^/]+/\.[^/]+\.shards-[0-9a-f]+/shard-\d+\.(parquet|safetensors)")


def _no_bucket(e: BaseException) -> bool:
    return "specified bucket does not exist" in str(e) or "NoSuchBucket" in str(e)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class ObjectMirror:
    """The bucket prefix behind one storage root and its local working copy (`cache`)."""

    def __init__(self, uri: str, cache: Path | None = None, fs: Any = None):
        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = split_uri(uri)
        self.base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        self.cache = Path(cache) if cache else cache_dir(uri)
        self.fs = fs or make_filesystem(uri)
        self._lock = threading.RLock()  # one push/pull at a time per process
        self._checked = False

    def __repr__(self) -> str:
        return f"ObjectMirror({self.uri!r}, cache={str(self.cache)!r})"

    # ---- errors a user can cause ------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except FileNotFoundError as e:
            if _no_bucket(e):
                raise explain(self.uri, self.bucket, doing, e) from e
            raise  # an object that vanished (a concurrent publish collected it): the caller may retry
        except Exception as e:  # botocore / aiohttp / s3fs raise many types: classify by name and text
            raise explain(self.uri, self.bucket, doing, e) from e

    def check(self) -> None:
        """Fail early with what to do when the endpoint, bucket or credentials are wrong."""
        if self._checked:
            return
        with self._errors("opening"):
            try:  # only the prefix: a bucket policy may allow listing nothing else
                self.fs.ls(f"{self.base}/{UNITS}", refresh=True)
            except FileNotFoundError as e:
                if _no_bucket(e):
                    raise
        self._checked = True

    # ---- units -----------------------------------------------------------------------------------
    @staticmethod
    def unit_of(rel: Path) -> Path | None:
        """The unit a path (relative to the root) belongs to; None for paths that stay local."""
        if STAGED_SHARD.fullmatch(rel.as_posix()):
            return rel
        if not rel.parts or _hidden(rel) or rel.name in LOCAL_ONLY:
            return None
        depth = UNIT_DEPTH.get(rel.parts[0], DEFAULT_DEPTH)
        return Path(*rel.parts[:depth])

    def _unit_files(self, unit: Path) -> dict[str, os.stat_result]:
        """Visible files of a unit in the cache, relpath -> stat (a file unit has the one entry '')."""
        path = self.cache / unit
        if path.is_file():
            return {"": path.stat()}
        out = {}
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path)
                if p.is_file() and not _hidden(rel):
                    out[rel.as_posix()] = p.stat()
        return out

    def local_units(self) -> list[Path]:
        """Units that have at least one file in the cache."""
        if not self.cache.is_dir():
            return []
        found = set()
        for dirpath, dirnames, filenames in os.walk(self.cache):
            base = Path(dirpath).relative_to(self.cache)
            if base == Path("."):
                dirnames[:] = [d for d in dirnames if d != STATE]
            for name in filenames:
                unit = self.unit_of(base / name if base != Path(".") else Path(name))
                if unit is not None:
                    found.add(unit)
        return sorted(found)

    def discard(self, folder: Path) -> list[Path]:
        """Remove the published units under `folder` (relative to the root) from the bucket: a staging
        folder once its shards were committed into the set."""
        with self._lock:
            gone = [u for u in self.remote_units() if u.is_relative_to(folder)]
            with self._errors(f"removing {folder.as_posix()} from"):
                for unit in gone:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm(self._manifest_key(unit))
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm(f"{self.base}/{OBJECTS}/{unit.as_posix()}", recursive=True)
                    self._state_path(unit).unlink(missing_ok=True)
            return gone

    def _state_path(self, unit: Path) -> Path:
        return self.cache / STATE / f"{unit.as_posix()}.json"

    def _state(self, unit: Path) -> dict[str, Any]:
        try:
            return json.loads(self._state_path(unit).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _save_state(self, unit: Path, state: dict[str, Any]) -> None:
        atomic_write_json(self._state_path(unit), state)

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _manifest_key(self, unit: Path) -> str:
        return f"{self.base}/{UNITS}/{unit.as_posix()}.json"

    def _object_key(self, unit: Path, rel: str, sha: str) -> str:
        name = Path(rel).name or unit.name
        return f"{self.base}/{OBJECTS}/{unit.as_posix()}/{sha}/{name}"

    # ---- publish ---------------------------------------------------------------------------------
    def dirty_units(self) -> list[Path]:
        """Units whose local files differ from what this cache last published or fetched."""
        return self.dirty_units_of(self.local_units())

    def dirty_units_of(self, units: Iterable[Path]) -> list[Path]:
        out = []
        for unit in units:
            files = self._unit_files(unit)
            recorded = self._state(unit).get("files", {})
            if {k: self._stamp(v) for k, v in files.items()} != {k: r["stamp"] for k, r in recorded.items()}:
                out.append(unit)
        return out

    def push(self) -> list[Path]:
        """Publish every changed unit (pointer files last); returns the units published."""
        with self._lock:
            dirty = sorted(self.dirty_units(), key=lambda u: (u.name in POINTER_NAMES, u.as_posix()))
            if dirty:
                self.check()
            for unit in dirty:
                self.publish_unit(unit)
            return dirty

    def publish_unit(self, unit: Path, *, before_swap: Any = None) -> dict[str, Any]:
        """Upload the unit's new objects, then PUT its manifest (the swap). `before_swap()` runs between."""
        files = self._unit_files(unit)
        recorded = self._state(unit).get("files", {})
        entries, stamps = {}, {}
        with self._errors(f"publishing {unit.as_posix()} to"):
            previous = self._read_manifest(unit)
            live = {e["key"] for e in (previous or {}).get("files", {}).values()}  # not collected meanwhile
            for rel, st in files.items():
                local = self.cache / unit / rel if rel else self.cache / unit
                old = recorded.get(rel)
                if old and old["stamp"] == self._stamp(st) and self._object_key(unit, rel, old["sha256"]) in live:
                    sha, stamp = old["sha256"], old["stamp"]
                else:
                    with self._snapshot(local) as snap:  # hash and upload the same bytes, whatever renames follow
                        st = snap.stat()
                        sha, stamp = sha256_file(snap), self._stamp(st)
                        key = self._object_key(unit, rel, sha)
                        if key not in live and not self.fs.exists(key):
                            self.fs.put_file(str(snap), key)
                entries[rel] = {"key": self._object_key(unit, rel, sha), "sha256": sha, "size": st.st_size}
                stamps[rel] = {"sha256": sha, "stamp": stamp, "size": st.st_size}
            manifest = {
                "unit": unit.as_posix(),
                "kind": "file" if list(files) == [""] else "dir",
                "files": entries,
                "published_at": datetime.now(UTC).isoformat(),
                "generation": uuid.uuid4().hex,
            }
            if before_swap is not None:
                before_swap()
            self.fs.pipe_file(self._manifest_key(unit), json.dumps(manifest, sort_keys=True).encode())
            etag = self._etag(unit)
            self._save_state(unit, {"etag": etag, "files": stamps})
            self._collect(unit, manifest, previous)
        return manifest

    @contextlib.contextmanager
    def _snapshot(self, path: Path) -> Iterator[Path]:
        """A hard link to the inode at `path` now (writers replace files by rename, never in place)."""
        snap = self.cache / STATE / "snapshots" / uuid.uuid4().hex
        snap.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                os.link(path, snap)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(path, snap)
            yield snap
        finally:
            snap.unlink(missing_ok=True)

    def _collect(self, unit: Path, manifest: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """Delete the unit's objects that neither the new nor the previous manifest names."""
        keep = {e["key"] for e in manifest["files"].values()}
        if unit.parts[0] not in NO_GRACE:  # a reader still fetching the previous version can finish
            keep |= {e["key"] for e in (previous or {}).get("files", {}).values()}
        folder = f"{self.base}/{OBJECTS}/{unit.as_posix()}"
        with contextlib.suppress(FileNotFoundError):
            stale = [k for k in self.fs.find(folder) if k not in keep]
            if stale:
                self.fs.rm(stale)

    def _read_manifest(self, unit: Path) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self._manifest_key(unit)))
        except FileNotFoundError:
            return None

    def _etag(self, unit: Path) -> str | None:
        try:
            return self.fs.info(self._manifest_key(unit), refresh=True).get("ETag")
        except FileNotFoundError:
            return None

    def published_files(self) -> dict[str, str]:
        """Every published file as its path under the root -> the s3:// URL of its current object."""
        out = {}
        for unit in self.remote_units():
            with self._errors("reading manifests of"):
                manifest = self._read_manifest(unit)
            for rel, entry in (manifest or {}).get("files", {}).items():
                out[(unit / rel).as_posix() if rel else unit.as_posix()] = f"s3://{entry['key']}"
        return out

    # ---- fetch -----------------------------------------------------------------------------------
    def remote_units(self) -> dict[Path, str]:
        """Published units -> the ETag of their manifest."""
        folder = f"{self.base}/{UNITS}"
        with self._errors("listing"):
            self.check()
            try:
                found = self.fs.find(folder, detail=True, refresh=True)
            except FileNotFoundError:
                return {}
        out = {}
        for key, info in found.items():
            rel = key[len(folder) + 1 :]
            if rel.endswith(".json"):
                out[Path(rel[: -len(".json")])] = info.get("ETag")
        return out

    def pull(self, under: Iterable[str | Path] | None = None) -> list[Path]:
        """Fetch every unit whose manifest changed since this cache last saw it (only those under the
        folders `under`, relative to the root, if given: the service needs checkpoints, not latents).

        Pointers first, then a fresh listing for the rest: whatever a fetched pointer names was published
        before it, so the second listing has it (one listing could predate the target and not the pointer).
        """
        scope = None if under is None else [Path(u) for u in under]

        def wanted(unit: Path, pointers: bool) -> bool:
            in_scope = scope is None or any(unit.is_relative_to(f) for f in scope)
            return in_scope and (unit.name in POINTER_NAMES) == pointers

        with self._lock:
            fetched = self._pull_some(lambda unit: wanted(unit, True))
            return fetched + self._pull_some(lambda unit: wanted(unit, False))

    def _pull_some(self, wanted) -> list[Path]:
        fetched = []
        for unit, etag in sorted(self.remote_units().items()):
            if not wanted(unit) or (etag is not None and self._state(unit).get("etag") == etag):
                continue
            if unit in self.dirty_units_of([unit]):
                log.warning("%s: the local copy of %s was never published; taking the bucket's", self.uri, unit)
            for attempt in range(3):  # a concurrent publish may have collected objects of the manifest read
                try:
                    if self.fetch_unit(unit):
                        fetched.append(unit)
                    break
                except FileNotFoundError as e:
                    if attempt == 2:
                        raise StorageError(
                            f"fetching {unit.as_posix()} from {self.uri}: its objects were replaced three times while "
                            "downloading (publishes in quick succession); retry"
                        ) from e
        return fetched

    def fetch_unit(self, unit: Path) -> bool:
        """Make the cache's copy of `unit` the published one (atomically); False if it was never published."""
        with self._errors(f"fetching {unit.as_posix()} from"):
            etag = self._etag(unit)
            manifest = self._read_manifest(unit)
            if manifest is None:
                return False
            target = self.cache / unit
            target.parent.mkdir(parents=True, exist_ok=True)
            current = self._unit_files(unit)
            have = {  # files of the cached copy still as fetched or published: copied instead of downloaded
                r["sha256"]: rel
                for rel, r in self._state(unit).get("files", {}).items()
                if rel in current and self._stamp(current[rel]) == r["stamp"]
            }
            tmp = target.parent / f".{target.name}.pull-{uuid.uuid4().hex[:8]}.tmp"
            stamps = {}
            try:
                for rel, entry in manifest["files"].items():
                    dest = tmp / rel if rel else tmp
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if entry["sha256"] in have:
                        reuse = have[entry["sha256"]]
                        shutil.copyfile(target / reuse if reuse else target, dest)
                    else:
                        self.fs.get_file(entry["key"], str(dest))
                    if dest.stat().st_size != entry["size"] or sha256_file(dest) != entry["sha256"]:
                        raise StorageError(f"{entry['key']}: size or sha256 differs from its manifest; publish again")
                    stamps[rel] = entry
                if manifest["kind"] == "dir":
                    tmp.mkdir(parents=True, exist_ok=True)  # an empty set is a folder too
                self._swap(tmp, target)
            finally:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                elif tmp.exists():
                    tmp.unlink()
            files = self._unit_files(unit)
            state = {
                rel: {"sha256": e["sha256"], "size": e["size"], "stamp": self._stamp(files[rel])}
                for rel, e in stamps.items()
                if rel in files
            }
            self._save_state(unit, {"etag": etag, "files": state})
        return True

    @staticmethod
    def _swap(new: Path, target: Path) -> None:
        """Replace `target` (a file or folder) by `new`; folders via the `.<name>.old` park readers know."""
        if new.is_file() or not target.is_dir():
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(new, target)
            return
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)


_MIRRORS: dict[tuple[str, Path], ObjectMirror] = {}
_MIRRORS_LOCK = threading.Lock()


def mirror_for(uri: str) -> ObjectMirror:
    """One mirror per (root, cache) in this process; commits under its cache publish (`publish_commit`)."""
    key = (uri.rstrip("/"), cache_dir(uri))
    with _MIRRORS_LOCK:
        if key not in _MIRRORS:
            _MIRRORS[key] = ObjectMirror(uri, key[1])
        return _MIRRORS[key]


def publish_commit(path: Path) -> None:
    """`rjepa_core.io` commit hook: a visible file or folder was committed under a mirror's cache."""
    path = Path(path)
    for mirror in list(_MIRRORS.values()):
        try:
            rel = path.resolve().relative_to(mirror.cache)
        except ValueError:
            continue
        if mirror.unit_of(rel) is not None:
            mirror.push()


add_commit_hook(publish_commit)

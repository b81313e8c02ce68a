"""Storage layout (SPEC §4): the one place that knows where every artefact lives.

    >>> layout = StorageLayout("/data/rjepa")                # or "file:///data/rjepa"
    >>> layout.latents_dir("smollm2-135m", "v1")
    PosixPath('/data/rjepa/latents/smollm2-135m/v1')
    >>> layout.interactions_path(datetime.date(2026, 11, 23)).name
    '2026-11-23.jsonl'

    >>> layout = StorageLayout("s3://rjepa/prod")            # object storage (rjepa_core.store.remote)
    >>> layout.root, layout.remote                           # a local working copy, and the bucket behind it

Names used in paths (llm tags, dataset versions, run ids) are validated, so no caller can escape the
root or collide with the hidden names that writers use for work in progress (leading '.').
An `s3://bucket/prefix` root keeps every path local (a cache folder, `root`) and mirrors it: building
the layout pulls what changed in the bucket, and every atomic commit under it publishes (see
`rjepa_core.store.remote`). Other object stores (gs://, az://, ...) are refused with a clear error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from pathlib import Path

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is safe as one path component, else raise ValueError saying why."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"{kind} {name!r} may only use letters, digits, '.', '_' and '-' (e.g. 'v1', 'qwen3-8b')")
    if ".." in name:
        raise ValueError(f"{kind} {name!r} must not contain '..'")
    if name.startswith("."):  # hidden names are reserved for temp files and folders of interrupted writes
        raise ValueError(f"{kind} {name!r} must not start with '.'")
    return name


def natural_key(name: str) -> list[int | str]:
    """Sort key where v2 < v10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def local_root(root: str | Path) -> Path:
    """The local folder behind `root`: a path, a file:// URI, or the cache folder of an s3:// root."""
    text = str(root)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() == "s3":
            from rjepa_core.store.s3 import cache_dir

            return cache_dir(text)
        if scheme.lower() != "file":
            raise ValueError(
                f"storage root {text!r}: only local storage (a folder or a file:// URI) and s3:// (also "
                f"MinIO and other S3-compatible stores through AWS_ENDPOINT_URL) are implemented; {scheme}:// "
                "is not. Mount that store as a local folder (e.g. with rclone) and pass that path instead."
            )
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise ValueError(f"storage root {text!r}: a file:// URI needs an absolute path, e.g. file:///data/rjepa")
        text = rest
    return Path(text).expanduser().resolve()


class StorageLayout:
    """Paths of every artefact under one root; creates nothing by itself."""

    def __init__(self, root: str | Path, *, pull: bool = True):
        """`pull=False` skips fetching an s3:// root's changes now (`self.remote.pull(under=...)` later)."""
        self.remote = None  # the ObjectMirror of an s3:// root, else None
        if isinstance(root, str) and root.lower().startswith("s3://"):
            from rjepa_core.store.remote import mirror_for

            self.remote = mirror_for(root)
            self.root = self.remote.cache
            if pull:
                self.remote.pull()
        else:
            self.root = local_root(root)

    @property
    def uri(self) -> str:
        """The root as configured: s3://bucket/prefix, or the local folder."""
        return self.remote.uri if self.remote else str(self.root)

    def __repr__(self) -> str:
        return f"StorageLayout({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageLayout) and (other.root, other.uri) == (self.root, self.uri)

    def __hash__(self) -> int:
        return hash(self.root)

    def portable(self, path: str | Path) -> str:
        """`path` as stored inside artefacts: relative to the root for object storage (each machine has its
        own cache folder), absolute otherwise."""
        path = Path(path)
        if self.remote is not None:
            with contextlib.suppress(ValueError):
                return path.resolve().relative_to(self.root).as_posix()
        return str(path)

    def pull(self, *folders: str | Path) -> None:
        """Object storage: fetch what changed under these folders of the root (all of it without any)."""
        if self.remote is not None:
            self.remote.pull([Path(f).resolve().relative_to(self.root) for f in folders] if folders else None)

    def resolve(self, stored: str | Path) -> Path:
        """The local path of a path read from an artefact (relative ones are under the root)."""
        stored = Path(stored)
        return stored if stored.is_absolute() else self.root / stored

    # ---- datasets (LLM-independent, cumulative versions) ---------------------------------------
    def dataset_dir(self, version: str) -> Path:
        return self.root / "datasets" / check_name("dataset version", version)

    def problems_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "problems.parquet"

    def cots_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "cots.parquet"

    def manifest_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "manifest.json"

    def versions(self) -> list[str]:
        """Dataset versions that have a manifest (i.e. were fully built), in natural order (v2 < v10)."""
        base = self.root / "datasets"
        if not base.is_dir():
            return []
        found = [p.parent.name for p in base.glob("*/manifest.json") if not p.parent.name.startswith(".")]
        return sorted(found, key=natural_key)

    # ---- per-LLM artefacts -------------------------------------------------------------------
    def student_chains_path(self, llm_tag: str, version: str) -> Path:
        """Chains sampled from the student (F11 candidates), kept apart from the LLM-independent dataset."""
        return (
            self.root
            / "chains"
            / check_name("llm_tag", llm_tag)
            / check_name("dataset version", version)
            / "student_chains.parquet"
        )

    def latents_dir(self, llm_tag: str, version: str) -> Path:
        return self.root / "latents" / check_name("llm_tag", llm_tag) / check_name("dataset version", version)

    def checkpoints_root(self, llm_tag: str) -> Path:
        """Holds every version's runs plus the LATEST.json / HISTORY.jsonl pointers of this LLM."""
        return self.root / "checkpoints" / check_name("llm_tag", llm_tag)

    def checkpoints_dir(self, llm_tag: str, version: str) -> Path:
        return self.checkpoints_root(llm_tag) / check_name("dataset version", version)

    def checkpoint_dir(self, llm_tag: str, version: str, run_id: str) -> Path:
        return self.checkpoints_dir(llm_tag, version) / check_name("run_id", run_id)

    def decoders_root(self, llm_tag: str) -> Path:
        return self.root / "decoders" / check_name("llm_tag", llm_tag)

    def decoder_dir(self, llm_tag: str, version: str) -> Path:
        """The latent decoder of a partition (one folder, replaced atomically on each materialization)."""
        return self.decoders_root(llm_tag) / check_name("dataset version", version)

    def adapters_dir(self, src: str, dst: str) -> Path:
        return self.root / "adapters" / f"{check_name('llm_tag', src)}__to__{check_name('llm_tag', dst)}"

    def reports_dir(self, llm_tag: str, version: str) -> Path:
        return self.root / "reports" / check_name("llm_tag", llm_tag) / check_name("dataset version", version)

    # ---- service side ------------------------------------------------------------------------
    def interactions_dir(self) -> Path:
        return self.root / "interactions"

    def interactions_path(self, date: dt.date) -> Path:
        if not isinstance(date, dt.date):
            raise TypeError(f"interactions_path needs a datetime.date, got {type(date).__name__}")
        day = date.date() if isinstance(date, dt.datetime) else date  # one file per day, whatever the time
        return self.interactions_dir() / f"{day.isoformat()}.jsonl"

    def index_db_path(self) -> Path:
        return self.root / "index.duckdb"

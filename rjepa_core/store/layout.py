"""Storage layout (SPEC §4): the one place that knows where every artefact lives.

    >>> layout = StorageLayout("/data/rjepa")                # or "file:///data/rjepa"
    >>> layout.latents_dir("smollm2-135m", "v1")
    PosixPath('/data/rjepa/latents/smollm2-135m/v1')
    >>> layout.interactions_path(datetime.date(2026, 11, 23)).name
    '2026-11-23.jsonl'

Names used in paths (llm tags, dataset versions, run ids) are validated, so no caller can escape the
root or collide with the hidden names that writers use for work in progress (leading '.').
Only local storage is implemented in this build: an object-store URI such as `s3://` is refused
with a clear error rather than half-supported.
"""

from __future__ import annotations

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
    """The local folder behind `root` (a path or a file:// URI); other protocols are refused."""
    text = str(root)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "file":
            raise ValueError(
                f"storage root {text!r}: only local storage (a folder or a file:// URI) is implemented in this "
                f"build; {scheme}:// is not. Mount the bucket as a local folder (e.g. with s3fs or rclone) "
                "and pass that path instead."
            )
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise ValueError(f"storage root {text!r}: a file:// URI needs an absolute path, e.g. file:///data/rjepa")
        text = rest
    return Path(text).expanduser().resolve()


class StorageLayout:
    """Paths of every artefact under one root; creates nothing by itself."""

    def __init__(self, root: str | Path):
        self.root = local_root(root)

    def __repr__(self) -> str:
        return f"StorageLayout({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageLayout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

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

    def decoder_dir(self, llm_tag: str, version: str) -> Path:
        """The latent decoder of a partition (one folder, replaced atomically on each materialization)."""
        return self.root / "decoders" / check_name("llm_tag", llm_tag) / check_name("dataset version", version)

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

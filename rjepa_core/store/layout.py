"""Storage layout (SPEC §4): the one place that knows where every artefact lives.

    >>> layout = StorageLayout("/data/rjepa")
    >>> layout.latents_dir("smollm2-135m", "v1")
    PosixPath('/data/rjepa/latents/smollm2-135m/v1')

Names used in paths (llm tags, versions, run ids) are validated so no caller can escape the root.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", "..") or ".." in name:
        raise ValueError(f"{kind} {name!r} may only use letters, digits, '.', '_' and '-' (and no '..')")
    return name


def natural_key(name: str) -> list:
    """Sort key where v2 < v10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class StorageLayout:
    def __init__(self, root: str | Path):
        text = str(root)
        if "://" in text:
            scheme, _, rest = text.partition("://")
            if scheme != "file":
                raise ValueError(
                    f"storage root {text!r}: only local folders (or file:// URIs) are implemented in this build; "
                    f"{scheme}:// object storage is not"
                )
            text = rest
        self.root = Path(text).expanduser().resolve()

    def __repr__(self) -> str:
        return f"StorageLayout({str(self.root)!r})"

    def dataset_dir(self, version: str) -> Path:
        return self.root / "datasets" / check_name("dataset version", version)

    def problems_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "problems.parquet"

    def cots_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "cots.parquet"

    def manifest_path(self, version: str) -> Path:
        return self.dataset_dir(version) / "manifest.json"

    def student_chains_path(self, llm_tag: str, version: str) -> Path:
        return (
            self.root
            / "chains"
            / check_name("llm_tag", llm_tag)
            / check_name("dataset version", version)
            / ("student_chains.parquet")
        )

    def latents_dir(self, llm_tag: str, version: str) -> Path:
        return self.root / "latents" / check_name("llm_tag", llm_tag) / check_name("dataset version", version)

    def checkpoints_root(self, llm_tag: str) -> Path:
        return self.root / "checkpoints" / check_name("llm_tag", llm_tag)

    def checkpoints_dir(self, llm_tag: str, version: str) -> Path:
        return self.checkpoints_root(llm_tag) / check_name("dataset version", version)

    def checkpoint_dir(self, llm_tag: str, version: str, run_id: str) -> Path:
        return self.checkpoints_dir(llm_tag, version) / check_name("run_id", run_id)

    def adapters_dir(self, src: str, dst: str) -> Path:
        return self.root / "adapters" / f"{check_name('llm_tag', src)}__to__{check_name('llm_tag', dst)}"

    def reports_dir(self, llm_tag: str, version: str) -> Path:
        return self.root / "reports" / check_name("llm_tag", llm_tag) / check_name("dataset version", version)

    def interactions_dir(self) -> Path:
        return self.root / "interactions"

    def interactions_path(self, date: dt.date) -> Path:
        return self.interactions_dir() / f"{date.isoformat()}.jsonl"

    def index_db_path(self) -> Path:
        return self.root / "index.duckdb"

    def versions(self) -> list[str]:
        """Dataset versions that have a manifest (i.e. were fully built), in natural order."""
        base = self.root / "datasets"
        found = [p.parent.name for p in base.glob("*/manifest.json")] if base.exists() else []
        return sorted(found, key=natural_key)

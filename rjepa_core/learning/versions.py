"""Feedback dataset versions: when enough accepted feedback is new, write `configs/datasets/<v>.yaml`.

    >>> next_feedback_version("v2", ["v1", "v2"])
    'v2.fb1'
    >>> next_feedback_version("v2.fb1", ["v1", "v2", "v2.fb1"])
    'v2.fb2'

The new version's parent is the newest version and its `feedback_until` is the time of the newest
log record counted, so the next count starts after it. It is written exactly like a hand-written
config (atomically), and then built by the same `dataset_job` (interactions → problems → gold_cots).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from rjepa_core.data.datasets import DatasetConfig, feedback_cutoff, load_dataset_config
from rjepa_core.interactions import read_jsonl
from rjepa_core.io import atomic_write_text, is_temp_file
from rjepa_core.learning.config import FeedbackPolicy
from rjepa_core.learning.feedback import ACCEPTED, records_between, validate_records

_FB = re.compile(r"^(?P<base>.+?)\.fb(?P<n>\d+)$")


def next_feedback_version(newest: str, existing: Iterable[str]) -> str:
    """`<base>.fb<n+1>`, where base is the newest version without its `.fbN` suffix."""
    m = _FB.match(newest)
    base = m.group("base") if m else newest
    taken = [int(mm.group("n")) for v in existing if (mm := _FB.match(v)) and mm.group("base") == base]
    return f"{base}.fb{max(taken, default=0) + 1}"


def log_records(directory: str | Path, after: str | None = None) -> list[dict[str, Any]]:
    """Interaction-log records created after `after` (ISO), reading only the day files that can hold them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    first_day = str(after)[:10] if after else ""
    out: list[dict[str, Any]] = []
    for p in sorted(directory.glob("*.jsonl")):
        if is_temp_file(p) or p.stem < first_day:
            continue
        out.extend(read_jsonl(p))
    return records_between(out, after=after)


def pending_feedback(
    interactions_dir: str | Path, configs: dict[str, DatasetConfig], newest: str, policy: FeedbackPolicy
) -> dict[str, Any]:
    """What the feedback sensor counts: records logged after the newest version's cutoff, validated."""
    cutoff = feedback_cutoff(configs, newest)
    records = log_records(interactions_dir, after=cutoff)
    rows = validate_records(records, policy)
    return {
        "after": cutoff,
        "num_records": len(records),
        "accepted": sum(r.outcome == ACCEPTED for r in rows),
        "until": str(records[-1]["created_at"]) if records else None,  # records_between sorts by time
    }


def write_feedback_version(
    datasets_dir: str | Path, parent: DatasetConfig, version: str, until: str, accepted: int
) -> Path:
    """Write `configs/datasets/<version>.yaml` (parent's split fractions and prompt; no new sources)."""
    path = Path(datasets_dir) / f"{version}.yaml"
    if path.exists():
        raise FileExistsError(f"{path} already exists: versions are immutable")
    body = {
        "version": version,
        "parent": parent.version,
        "description": f"{parent.version} + {accepted} new accepted interactions (feedback logged up to {until})",
        "val_frac": parent.val_frac,
        "test_frac": parent.test_frac,
        "few_shot": parent.few_shot,
        "feedback_until": until,
        "sources": [],
    }
    DatasetConfig(**{**body, "sources": []})  # validate before writing
    atomic_write_text(path, "# written by the feedback sensor\n" + yaml.safe_dump(body, sort_keys=False))
    load_dataset_config(path)  # what the dataset_version_sensor will read
    return path

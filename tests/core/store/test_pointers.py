"""Latest-checkpoint pointers: atomic publish, history, rollback as a stack."""

from __future__ import annotations

import pytest

from rjepa_core.store import pointers
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import (
    deployment_stack,
    pointer_history,
    publish_latest_checkpoint,
    read_latest_checkpoint,
    rollback_latest,
)


@pytest.fixture
def layout(tmp_path):
    return StorageLayout(tmp_path)


def test_publish_and_read(layout):
    assert read_latest_checkpoint(layout, "tiny") is None
    p = publish_latest_checkpoint(layout, "tiny", "v1", "run1", {"val_loss": 0.5})
    latest = read_latest_checkpoint(layout, "tiny")
    assert latest == p
    assert {k: latest[k] for k in ("llm_tag", "dataset_version", "run_id", "meta")} == {
        "llm_tag": "tiny",
        "dataset_version": "v1",
        "run_id": "run1",
        "meta": {"val_loss": 0.5},
    }
    assert latest["path"] == str(layout.checkpoint_dir("tiny", "v1", "run1") / "best") and latest["created_at"]
    other = publish_latest_checkpoint(layout, "tiny", "v2", "run2", {"path": "/ckpt/x", "a": 1})
    assert other["path"] == "/ckpt/x" and other["meta"] == {"a": 1}
    assert publish_latest_checkpoint(layout, "tiny", "v2", "run3", path="/ckpt/y")["path"] == "/ckpt/y"
    assert [h["run_id"] for h in pointer_history(layout, "tiny")] == ["run1", "run2", "run3"]
    assert read_latest_checkpoint(layout, "other") is None  # pointers are per llm
    assert not [p for p in layout.checkpoints_root("tiny").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="run_id"):
        publish_latest_checkpoint(layout, "tiny", "v1", "../escape")


def test_rollback_goes_back_one_deployment_per_call(layout):
    with pytest.raises(FileNotFoundError, match="ever published"):
        rollback_latest(layout, "tiny")
    publish_latest_checkpoint(layout, "tiny", "v1", "run1", {"path": "/c/1"})
    with pytest.raises(ValueError, match="no earlier checkpoint"):
        rollback_latest(layout, "tiny")
    publish_latest_checkpoint(layout, "tiny", "v1", "run2")
    publish_latest_checkpoint(layout, "tiny", "v2", "run3")
    back = rollback_latest(layout, "tiny")
    assert back["run_id"] == "run2" and back["meta"]["rolled_back_from"] == "run3"
    assert read_latest_checkpoint(layout, "tiny") == back
    back = rollback_latest(layout, "tiny")  # twice: two deployments back, not forward to run3
    assert (back["run_id"], back["path"], back["meta"]["rolled_back_from"]) == ("run1", "/c/1", "run2")
    with pytest.raises(ValueError, match="no earlier checkpoint"):
        rollback_latest(layout, "tiny")
    publish_latest_checkpoint(layout, "tiny", "v2", "run4")
    assert [p["run_id"] for p in deployment_stack(layout, "tiny")] == ["run1", "run4"]
    assert [h["action"] for h in pointers.history(layout, "tiny")] == ["publish"] * 3 + ["rollback"] * 2 + ["publish"]


def test_a_torn_history_line_is_skipped(layout):
    publish_latest_checkpoint(layout, "tiny", "v1", "run1")
    publish_latest_checkpoint(layout, "tiny", "v1", "run2")
    with open(layout.checkpoints_root("tiny") / "HISTORY.jsonl", "a") as f:
        f.write('{"llm_tag": "tiny", "run_')  # a crash mid-append
    assert [h["run_id"] for h in pointer_history(layout, "tiny")] == ["run1", "run2"]
    assert rollback_latest(layout, "tiny")["run_id"] == "run1"

"""StorageLayout: SPEC §4 paths, name validation, local and s3:// roots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rjepa_core.store.layout import StorageLayout, local_root


def test_paths_follow_the_spec_layout(tmp_path):
    layout = StorageLayout(tmp_path)
    r = tmp_path.resolve()
    assert layout.problems_path("v1") == r / "datasets/v1/problems.parquet"
    assert layout.cots_path("v1") == r / "datasets/v1/cots.parquet"
    assert layout.manifest_path("v1") == r / "datasets/v1/manifest.json"
    assert layout.latents_dir("qwen3-8b", "v2") == r / "latents/qwen3-8b/v2"
    assert layout.checkpoints_dir("qwen3-8b", "v2") == r / "checkpoints/qwen3-8b/v2"
    assert layout.checkpoint_dir("qwen3-8b", "v2", "run_1.a") == r / "checkpoints/qwen3-8b/v2/run_1.a"
    assert layout.adapters_dir("small", "large") == r / "adapters/small__to__large"
    assert layout.reports_dir("tiny", "v1") == r / "reports/tiny/v1"
    assert layout.interactions_path(dt.date(2026, 11, 3)) == r / "interactions/2026-11-03.jsonl"
    assert layout.interactions_path(dt.datetime(2026, 11, 3, 23, 59)) == r / "interactions/2026-11-03.jsonl"
    assert layout.index_db_path() == r / "index.duckdb"
    assert not (tmp_path / "datasets").exists()  # computing paths creates nothing


def test_versions_are_the_manifested_ones_in_natural_order(tmp_path):
    layout = StorageLayout(tmp_path)
    assert layout.versions() == []
    for v in ["v10", "v2", "v1", "v3"]:
        layout.dataset_dir(v).mkdir(parents=True)
        if v != "v3":  # v3 was never finished: no manifest
            layout.manifest_path(v).write_text("{}")
    assert layout.versions() == ["v1", "v2", "v10"]


@pytest.mark.parametrize("bad", ["..", "../etc", "a/b", "", "v 1", ".hidden", "a..b", "v1\n", "é"])
def test_unsafe_names_are_refused_with_a_clear_error(tmp_path, bad):
    layout = StorageLayout(tmp_path)
    with pytest.raises(ValueError, match="may only use|must not"):
        layout.latents_dir(bad, "v1")
    with pytest.raises(ValueError, match="dataset version"):
        layout.dataset_dir(bad)
    with pytest.raises(ValueError, match="run_id"):
        layout.checkpoint_dir("tiny", "v1", bad)


def test_roots_file_uri_and_s3_accepted_other_object_stores_refused(tmp_path, monkeypatch):
    assert StorageLayout(f"file://{tmp_path}") == StorageLayout(tmp_path)
    for uri in ("gs://bucket/rjepa", "az://c/x", "memory://x"):
        with pytest.raises(ValueError, match="and s3:// .* are implemented"):
            StorageLayout(uri)
    with pytest.raises(ValueError, match="absolute path"):
        StorageLayout("file://relative/path")
    # an s3:// root's local side is its cache folder; naming it needs no network (tests/core/store/test_remote.py)
    monkeypatch.setenv("RJEPA_STORAGE_CACHE", str(tmp_path / "cache"))
    assert local_root("s3://bucket/rjepa") == (tmp_path / "cache").resolve()
    monkeypatch.delenv("RJEPA_STORAGE_CACHE")
    assert local_root("s3://bucket/rjepa/") == Path.home().resolve() / ".cache/rjepa/s3/bucket/rjepa"

"""teacher_data through Dagster against a real OpenAI-compatible server on 127.0.0.1; create_dataset_job."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.layout import StorageLayout
from tests.assets.conftest import write_yaml

KEY = "sk-test-SECRET-123456"


def test_teacher_data_adds_validated_problems_and_keeps_keys_out(defs, project, instance, fake_server, monkeypatch):
    monkeypatch.setenv("TEACHER_FAKE_BASE_URL", fake_server.base_url)
    monkeypatch.setenv("TEACHER_FAKE_MODEL", "fake-model")
    monkeypatch.setenv("TEACHER_FAKE_API_KEY", KEY)
    _, configs, store = project
    write_yaml(
        configs / "datasets" / "v3.yaml",
        {
            "version": "v3",
            "sources": [],
            "teachers": ["fake"],
            "teacher_problems": 4,
            "teacher_budget_usd": 5.0,
            "teacher_subdomain": "addition",
        },
    )
    instance.add_dynamic_partitions("dataset_version", ["v3"])
    res = defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v3", instance=instance)
    assert res.success
    layout = StorageLayout(store)
    problems = read_records(Problem, layout.problems_path("v3"))
    assert len(problems) == 4 and all(p.source == "teacher:fake-model" for p in problems)
    cots = read_records(ChainOfThought, layout.cots_path("v3"))
    assert cots and all(c.origin == "teacher:fake-model" for c in cots)
    assert any(c.is_valid for c in cots)
    mat = instance.get_latest_materialization_event(dg.AssetKey("teacher_data")).asset_materialization
    assert mat.metadata["num_problems"].value == 4 and mat.metadata["spent_usd"].value > 0
    # the key went to the server, and nowhere else
    assert any(KEY in r["headers"].get("authorization", "") for r in fake_server.requests)
    stored = "".join(p.read_text(errors="ignore") for p in store.rglob("*") if p.suffix in (".json", ".jsonl"))
    stored += "".join(p.read_bytes().decode("latin-1") for p in store.rglob("*.parquet"))
    assert KEY not in stored
    assert KEY not in json.dumps({k: str(v.value) for k, v in mat.metadata.items()})
    # nor in the Dagster instance: event log and run storage (SQLite files and their WAL), compute logs.
    # The same scan finds the teacher's (non-secret) model name there, so it does read what the run wrote.
    dagster_files = b"".join(p.read_bytes() for p in Path(instance.root_directory).rglob("*") if p.is_file())
    assert b"fake-model" in dagster_files
    assert KEY.encode() not in dagster_files


def test_teacher_data_without_teachers_skips_with_a_message(defs, project, instance):
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    res = defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance)
    assert res.success
    mat = instance.get_latest_materialization_event(dg.AssetKey("teacher_data")).asset_materialization
    assert "names no teachers" in mat.metadata["skipped"].value


def test_create_dataset_job_writes_a_config_the_sensor_picks_up(defs, project, instance):
    from rjepa_assets.defs.automation.sensors import dataset_version_sensor

    resources, configs, _ = project
    config = {
        "ops": {
            "write_dataset_config": {
                "config": {
                    "version": "v9",
                    "parent": "v1",
                    "count": 5,
                    "teachers": ["fake"],
                    "budget_usd": 0.5,
                    "reasoning_gym_task": "chain_sum",
                    "reasoning_gym_size": 4,
                }
            }
        }
    }
    res = defs.resolve_job_def("create_dataset_job").execute_in_process(run_config=config, instance=instance)
    assert res.success
    assert (configs / "datasets" / "v9.yaml").exists()
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    assert "v9" in [r.partition_key for r in dataset_version_sensor(ctx).run_requests]
    with pytest.raises(dg.Failure, match="already exists"):  # versions are immutable
        defs.resolve_job_def("create_dataset_job").execute_in_process(run_config=config, instance=instance)

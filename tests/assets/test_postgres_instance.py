"""The pipeline on a Dagster instance stored in a real PostgreSQL 15 server (deploy/dagster.postgres.yaml).

The server is Debian's, started by the test in a temporary directory on 127.0.0.1 (tests/postgres.py), and
restarted mid-test: what was materialized must still be there, and the instance must keep working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.assets.test_materialize import run_pipeline
from tests.postgres import PostgresServer

DEPLOY_INSTANCE = Path(__file__).resolve().parents[2] / "deploy" / "dagster.postgres.yaml"
PIPELINE_ASSETS = ("problems", "gold_cots", "student_chains", "latents", "jepa_checkpoint", "eval_report")


@pytest.fixture
def pg():
    with PostgresServer.started() as server:
        yield server


def postgres_instance(home: Path) -> dg.DagsterInstance:
    """The instance a deployment gets: the shipped yaml as $DAGSTER_HOME/dagster.yaml."""
    home.mkdir(exist_ok=True)
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def materialized(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    return {k: set(instance.get_materialized_partitions(dg.AssetKey(k))) for k in PIPELINE_ASSETS}


def checkpoint_records(instance: dg.DagsterInstance) -> list[dg.EventLogRecord]:
    return list(instance.fetch_materializations(dg.AssetKey("jepa_checkpoint"), limit=10).records)


def test_pipeline_partitions_on_postgres_survive_a_server_restart(defs, project, pg, tmp_path, monkeypatch):
    from dagster_postgres.run_storage import PostgresRunStorage

    from tests.assets.conftest import V2, write_yaml

    for key, value in pg.env().items():
        monkeypatch.setenv(key, value)
    instance = postgres_instance(tmp_path / "dagster_home")
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        r1, r2 = run_pipeline(defs, instance)
        assert r1.success and r2.success
        before = materialized(instance)
        assert before == {"problems": {"v1"}, "gold_cots": {"v1"}, **{k: {"v1|tiny"} for k in PIPELINE_ASSETS[2:]}}
        ckpt = checkpoint_records(instance)
        assert len(ckpt) == 1 and ckpt[0].run_id == r2.run_id
        assert "best_val_loss" in ckpt[0].asset_materialization.metadata
        run_ids = {r.run_id for r in instance.get_runs()}
        assert run_ids == {r1.run_id, r2.run_id}

        old_pid = pg.pid()
        pg.restart()
        assert pg.pid() != old_pid  # a new server process, same data directory

        # the same instance object reconnects (dagster-postgres holds no pooled connection) ...
        assert materialized(instance) == before
        # ... and so does a fresh one built from the yaml, as a restarted webserver or daemon would
        fresh = postgres_instance(tmp_path / "dagster_home")
        try:
            assert materialized(fresh) == before
            assert {r.run_id for r in fresh.get_runs()} == run_ids
            again = checkpoint_records(fresh)
            assert [r.storage_id for r in again] == [r.storage_id for r in ckpt]
            assert again[0].asset_materialization.metadata == ckpt[0].asset_materialization.metadata
            assert fresh.get_run_by_id(r2.run_id).is_success

            # and it can materialize once more: the next dataset version, after the restart
            _, configs, _ = project
            write_yaml(configs / "datasets" / "v2.yaml", V2)
            fresh.add_dynamic_partitions("dataset_version", ["v2"])
            r3 = defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v2", instance=fresh)
            assert r3.success
            assert set(fresh.get_materialized_partitions(dg.AssetKey("problems"))) == {"v1", "v2"}
            assert set(instance.get_materialized_partitions(dg.AssetKey("gold_cots"))) == {"v1", "v2"}
        finally:
            fresh.dispose()
    finally:
        instance.dispose()


def test_missing_postgres_settings_name_the_variable(tmp_path, monkeypatch):
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    with pytest.raises(Exception, match="DAGSTER_PG_PORT"):
        postgres_instance(tmp_path / "home")


def test_entrypoint_names_unset_instance_variables_before_dagster_starts(tmp_path):
    """The image's entrypoint stops a webserver/daemon/code server with one line naming what to set."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    env = {"PATH": os.environ["PATH"], "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "u"}
    entry = [sys.executable, "-m", "rjepa_assets.instance_env"]
    res = subprocess.run([*entry, "dagster-daemon", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "reads DAGSTER_PG_PORT, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB, not set" in res.stderr
    assert "Traceback" not in res.stderr
    # other commands (the service, run and step workers) are not checked: they run as given
    res = subprocess.run([*entry, "python", "-c", "print('ran')"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ran"
    full = env | {"DAGSTER_PG_PORT": "5432", "DAGSTER_PG_PASSWORD": "p", "DAGSTER_PG_DB": "d"}
    from rjepa_assets.instance_env import loads_instance, missing_env

    assert missing_env(home / "dagster.yaml", full) == []
    assert loads_instance(["/usr/local/bin/dagster", "api", "grpc", "-m", "x"]) and loads_instance(["dagster", "dev"])
    assert not loads_instance(["dagster", "api", "execute_run"]) and not loads_instance(["rjepa", "serve"])

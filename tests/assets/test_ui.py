"""`dagster dev` on a real instance: GraphQL lists our assets with their latest materialization, and
headless Chromium renders the asset graph (screenshot kept in the test's tmp folder only)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from tests.chromium import ARGS

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
{ assetNodes { assetKey { path } partitionDefinition { description }
    assetMaterializations(limit: 1) { partition runId } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_dev_serves_graph_and_materializations(tmp_path, project):
    resources, configs, store = project
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RJEPA_STORAGE": str(store), "RJEPA_CONFIGS": str(configs)}

    # materialize the dataset assets into that instance first, as a user would
    from rjepa_assets.definitions import build_defs

    os.chdir(home)  # dagster.yaml paths are relative to the instance folder
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("dataset_version", ["v1"])
            res = (
                build_defs(resources)
                .resolve_job_def("dataset_job")
                .execute_in_process(partition_key="v1", instance=instance)
            )
            assert res.success
    finally:
        os.chdir(ROOT)

    port = free_port()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline, nodes = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=10)
                nodes = r.json()["data"]["assetNodes"]
                if nodes:
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        assert nodes, "dagster dev did not answer GraphQL within 120 s"
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {"problems", "gold_cots", "student_chains", "latents", "jepa_checkpoint", "eval_report"} <= set(by_key)
        assert by_key["problems"]["assetMaterializations"][0]["partition"] == "v1"
        chromium = shutil.which("chromium")
        if chromium is None:
            pytest.skip("chromium not installed (apt-get install -y chromium): GraphQL checked, no screenshot")
        shot = tmp_path / "asset_graph.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                *ARGS,
                f"--user-data-dir={tmp_path / 'chrome'}",
                "--virtual-time-budget=15000",
                "--window-size=1400,900",
                f"--screenshot={shot}",
                f"{url}/asset-groups",
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

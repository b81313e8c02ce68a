"""Which Dagster executor runs a job's steps, from `RJEPA_EXECUTOR` (read when the code location loads).

in_process    (default) one process per run: the student is loaded once and shared by every asset
              of the run, and steps don't each pay torch's import (~1.5 s)
multiprocess  one process per step on the same machine
k8s           one Kubernetes Job per step (dagster-k8s' k8s_job_executor): a GPU-heavy step's pod gets
              the GPU its `dagster-k8s/config` op tags ask for (rjepa_assets.defs.student.assets.GPU_OP_TAGS)

RJEPA_EXECUTOR=k8s dagster api grpc -m rjepa_assets.definitions -a defs -h 0.0.0.0 -p 4000
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "k8s")


def executor_from_env(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    name = env.get("RJEPA_EXECUTOR", "") or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as e:
            raise RuntimeError(
                "RJEPA_EXECUTOR=k8s needs dagster-k8s: pip install -e '.[deploy]' (the Dockerfile does)"
            ) from e
        return k8s_job_executor
    raise ValueError(f"RJEPA_EXECUTOR={name!r} is not an executor: use one of {', '.join(EXECUTORS)}")

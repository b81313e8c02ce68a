"""`latents_by_shard_job` [llm × dataset_version]: the `latents` of one partition, one Dagster step per shard range.

    plan_latent_shards ──(DynamicOutput per shard range)──> extract_latent_shards ×N ──collect──> commit_latent_shards

The same orchestration as the `latents` asset's `workers` option (`rjepa_core.llm.sharded`), but the fan-out
is Dagster's: each range is its own step, so the job's executor decides where they run —
`multiprocess_executor` (the default here, also when `RJEPA_EXECUTOR` is unset or in_process: one process
per step, side by side on this machine) or `k8s_job_executor` with `RJEPA_EXECUTOR=k8s` on a cluster (one
pod per step, each with one GPU through the op's `dagster-k8s/config` tags, `GPU_OP_TAGS`). Each step
commits its shards into the run's staging folder; the commit step checks that every planned shard is
there, swaps the set in, refreshes the DuckDB index and records a materialization of `latents` for the
partition. A failed step leaves the previous set untouched (its
staging folder is hidden and ignored by readers; rerun the job).
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from rjepa_assets.defs.executor import executor_from_env
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import StorageResource, StudentLLMResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS
from rjepa_core.llm.inherit import clear_latent_provenance, write_latent_provenance
from rjepa_core.llm.sharded import (
    captured_for,
    discard_staging,
    extract_shards,
    partition_inputs,
    plan_shards,
    split_shards,
    start_staging,
)
from rjepa_core.store.index import build_index
from rjepa_core.store.latents import LatentStore


class ShardPlanConfig(dg.Config):
    shard_size: int = 1024  # sequences per shard (< 64 or a multiple of 64, see rjepa_core.llm.sharded)
    shards_per_step: int = 1  # shards each extraction step extracts (a step loads the student once)


@dg.op(out=dg.DynamicOut(dict), description="Plan the partition's shards and a staging folder; one output per range.")
def plan_latent_shards(context: dg.OpExecutionContext, config: ShardPlanConfig, storage: StorageResource):
    if config.shards_per_step < 1:
        raise dg.Failure(f"shards_per_step must be >= 1, got {config.shards_per_step}")
    version, tag = split_key(context.partition_key)
    layout = storage.layout()
    _, cots = partition_inputs(layout, tag, version)
    try:
        plan = plan_shards(len(cots), config.shard_size)
    except ValueError as e:
        raise dg.Failure(str(e)) from None
    if not plan:
        raise dg.Failure(f"no chains for {tag}/{version}: materialize gold_cots and student_chains first")
    staging = start_staging(layout, tag, version)
    steps = -(-len(plan) // config.shards_per_step)
    context.log.info(f"{len(cots)} chains → {len(plan)} shard(s) in {steps} step(s), staging {staging}")
    expected = [len(r) for r in plan]
    for r in split_shards(len(plan), steps):
        # relative to the root for object storage: the step may run on another machine with its own cache
        task = {"staging": layout.portable(staging), "start": r.start, "stop": r.stop, "shard_size": config.shard_size}
        yield dg.DynamicOutput({**task, "expected": expected}, mapping_key=f"shards_{r.start}_{r.stop}")


@dg.op(
    tags=GPU_OP_TAGS,  # one GPU (and the GPU-node toleration) per extraction pod under k8s_job_executor
    description="Extract and commit one range of shards (loads the student in this step's process).",
)
def extract_latent_shards(
    context: dg.OpExecutionContext, task: dict, storage: StorageResource, student_llm: StudentLLMResource
) -> dict:
    version, tag = split_key(context.partition_key)
    layout = storage.layout()
    problems, cots = partition_inputs(layout, tag, version)
    student = student_llm.load(tag)
    shards = range(task["start"], task["stop"])
    staging = layout.resolve(task["staging"])
    captured = captured_for(layout, student.spec, version, cots, problems)  # from sampling, or the parent's
    log = context.log.info
    extract_shards(student, problems, cots, shards, task["shard_size"], staging, log=log, captured=captured)
    return task


@dg.op(description="Swap the complete staged set in, refresh the DuckDB index, record the materialization.")
def commit_latent_shards(
    context: dg.OpExecutionContext,
    tasks: list[dict],
    storage: StorageResource,
    duckdb: DuckDBResource,
    student_llm: StudentLLMResource,
):
    version, tag = split_key(context.partition_key)
    layout = storage.layout()
    store = LatentStore(layout)
    staging = layout.resolve(tasks[0]["staging"])
    clear_latent_provenance(layout, tag, version)
    try:
        store.commit_staged(tag, version, staging, tasks[0]["expected"])
    except RuntimeError as e:
        raise dg.Failure(f"{e} (the previous set is kept)") from e
    finally:
        discard_staging(layout, staging)
    problems, cots = partition_inputs(layout, tag, version)
    write_latent_provenance(layout, student_llm.spec(tag), version, problems, cots)
    build_index(layout, duckdb.database)
    stats = store.stats(tag, version)
    yield dg.AssetMaterialization(
        asset_key="latents",
        partition=context.partition_key,
        metadata={
            **{k: v for k, v in stats.items() if isinstance(v, int | float | str)},
            "extraction_steps": len(tasks),
        },
    )
    yield dg.Output(None)


def shard_executor() -> dg.ExecutorDefinition:
    """RJEPA_EXECUTOR's executor (k8s on a cluster), but never in-process: that would run the ranges in turn."""
    executor = executor_from_env()
    return dg.multiprocess_executor if executor.name == "in_process" else executor


@dg.job(
    partitions_def=llm_x_version,
    executor_def=shard_executor(),
    description="latents of one partition with one step per shard range (multiprocess here, k8s_job_executor on "
    "a cluster); the `latents` asset's default path extracts in one process.",
)
def latents_by_shard_job():
    commit_latent_shards(plan_latent_shards().map(extract_latent_shards).collect())

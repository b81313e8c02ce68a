"""The modes report asset [llm × dataset_version]: OFF, RERANK, NUDGE and PLAN on the same test problems."""

import dagster as dg

from rjepa_assets.defs.decoder.assets import latent_decoder
from rjepa_assets.defs.jepa.assets import jepa_checkpoint
from rjepa_assets.defs.metadata import fmt, md_table
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import StorageResource, StudentLLMResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL
from rjepa_core.pipeline import run_modes


class ModesConfig(dg.Config):
    k: int = 4  # RERANK candidates: the first K sampled test chains
    limit: int = 0  # first N test problems only (0 = all)
    nudge_m: int = 4  # alternatives per nudged step
    # NUDGE re-extracts each chain prefix teacher-forced instead of using the latents captured while sampling
    nudge_teacher_forced: bool = False
    plan_k: int = 2  # steps planned
    plan_from_steps: int = 1  # plan after the greedy chain's first N steps (0 = from the question alone)
    max_new_tokens: int = 160
    bootstrap: int = 1000
    device: str = "cpu"


@dg.asset(
    partitions_def=llm_x_version,
    deps=[jepa_checkpoint, latent_decoder],
    group_name="evaluation",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch"},
    description="Test split, the four inference modes side by side: OFF (greedy), RERANK (JEPA vote and siblings), "
    "NUDGE (and its never-nudging control), PLAN — accuracy with 95 % CIs, paired difference vs OFF, tokens and "
    "seconds per problem. Slow (the student writes every NUDGE/PLAN chain): run `modes_job` or `rjepa eval-modes`.",
)
def modes_report(
    context: dg.AssetExecutionContext, config: ModesConfig, storage: StorageResource, student_llm: StudentLLMResource
):
    tables = {}
    for key in context.partition_keys:
        version, tag = split_key(key)
        try:
            modes = run_modes(
                storage.layout(), tag, version, student_llm.load(tag), k=config.k, limit=config.limit,
                nudge_m=config.nudge_m, nudge_teacher_forced=config.nudge_teacher_forced, plan_k=config.plan_k,
                plan_from_steps=config.plan_from_steps, max_new_tokens=config.max_new_tokens,
                bootstrap=config.bootstrap, device=config.device, log=context.log.info,
            )  # fmt: skip
        except (FileNotFoundError, ValueError) as exc:
            raise dg.Failure(f"{tag}/{version}: {exc}") from exc
        tables[str(key)] = modes
    rows = [
        {
            "partition": key,
            "mode": m,
            "accuracy": fmt(acc),
            "ci95": "[" + ", ".join(fmt(x) for x in modes["ci95"][m]) + "]",
            "minus_off": fmt(modes["vs_off"][m]["mean"]) if m in modes["vs_off"] else "–",
            "tokens": f"{modes['mean_tokens'][m]:.0f}",
        }
        for key, modes in tables.items()
        for m, acc in modes["accuracy"].items()
    ]
    first = next(iter(tables.values()))
    return dg.MaterializeResult(
        metadata={
            "modes": md_table(rows),
            "n_problems": first["n_problems"],
            "nudge_accuracy": first["accuracy"]["NUDGE"],
            "plan_accuracy": first["accuracy"]["PLAN"],
            "off_accuracy": first["accuracy"]["OFF"],
            "rerank_jepa_vote_accuracy": first["accuracy"]["RERANK:jepa_vote"],
            "problems_nudged": first["nudge"]["problems_nudged"],
            "nudge_examples": md_table(first["nudge"]["examples"]) if first["nudge"]["examples"] else "none",
        }
    )

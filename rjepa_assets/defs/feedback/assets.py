"""The `interactions` asset [dataset_version]: the service's interaction log, validated as SPEC F14 says.

A dataset version with a feedback cutoff (`feedback_until`, its own or inherited) takes every record
logged up to it, keeps consented records of workspaces that are not opted out, and validates them
(`rjepa_core.learning.feedback`): accepted positives become problems with valid chains, thumbs-down
answers invalid chains (negatives), the rest is counted with its reason. `problems` and `gold_cots` of
the same version read what it writes, exactly as they read `teacher_data`'s files.
"""

import dagster as dg

from rjepa_assets.defs.metadata import md_table
from rjepa_assets.defs.partitions import dataset_version_partitions
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_core.data.datasets import feedback_cutoff, load_dataset_configs
from rjepa_core.io import atomic_write_json
from rjepa_core.learning.feedback import records_between, summary, to_dataset, validate_records
from rjepa_core.learning.versions import log_records
from rjepa_core.schemas import ChainOfThought, Problem, write_records

FEEDBACK_PROBLEMS = "feedback_problems.parquet"
FEEDBACK_COTS = "feedback_cots.parquet"
FEEDBACK_OUTCOMES = "feedback_outcomes.json"  # one row per log record: outcome, reason, ids (no text)


@dg.asset(
    partitions_def=dataset_version_partitions,
    group_name="datasets",
    kinds={"parquet"},
    description="User feedback up to the version's cutoff: consented, not opted out, validated (thumbs up + "
    "JEPA score + automatic check → accepted; thumbs down → negative); counts, PII hits, rejection reasons.",
)
def interactions(context: dg.AssetExecutionContext, storage: StorageResource, configs: ConfigsResource):
    version = context.partition_key
    cfgs = load_dataset_configs(configs.dir("datasets"))
    if version not in cfgs:
        raise dg.Failure(f"dataset version {version!r} has no config: create {configs.dir('datasets')}/{version}.yaml")
    layout, policy = storage.layout(), configs.loop().feedback
    out = layout.dataset_dir(version)
    cutoff = feedback_cutoff(cfgs, version)
    records = records_between(log_records(layout.interactions_dir()), until=cutoff) if cutoff else []
    rows = validate_records(records, policy)
    problems, cots = to_dataset(rows)
    write_records(problems, out / FEEDBACK_PROBLEMS, Problem)
    write_records(cots, out / FEEDBACK_COTS, ChainOfThought)
    atomic_write_json(out / FEEDBACK_OUTCOMES, [r.to_row() for r in rows])
    s = summary(rows)
    if cutoff is None:
        context.log.info(f"{version} has no feedback cutoff (feedback_until): no interactions used")
    return dg.MaterializeResult(
        metadata={
            "feedback_until": cutoff or "",
            "num_records": s["num_records"],
            "accepted": s["by_outcome"]["accepted"],
            "negative": s["by_outcome"]["negative"],
            "rejected": s["by_outcome"]["rejected"],
            "rejected_reasons": md_table(s["rejected_reasons"], ("reason", "records")),
            "pii_redactions": dg.MetadataValue.json(s["pii_redactions"]),
            "records_with_pii": s["records_with_pii"],
            "checked": s["checked"],
            "num_problems": len(problems),
            "num_chains": len(cots),
            "min_score01": policy.min_score01,
            "opted_out_workspaces": dg.MetadataValue.json(policy.opted_out_workspaces),
        }
    )

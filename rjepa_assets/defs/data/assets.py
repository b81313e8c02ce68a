"""Dataset assets [dataset_version]: problems (cumulative, split by problem) and validated gold chains."""

from collections import Counter

import dagster as dg

from rjepa_assets.defs.feedback.assets import FEEDBACK_COTS, FEEDBACK_PROBLEMS, interactions
from rjepa_assets.defs.metadata import md_table
from rjepa_assets.defs.partitions import dataset_version_partitions
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_assets.defs.teacher.assets import teacher_data
from rjepa_core.data.datasets import (
    build_gold_cots,
    build_problems,
    feedback_cutoff,
    load_dataset_config,
    load_dataset_configs,
    manifest,
)
from rjepa_core.io import atomic_write_json
from rjepa_core.learning.feedback import USER_SOURCE
from rjepa_core.learning.forget import purge_derived
from rjepa_core.schemas import ChainOfThought, Problem, read_records, write_records


def _has_feedback(configs: ConfigsResource, version: str) -> bool:
    """A version with a feedback cutoff rebuilds all its user rows from `interactions` (never inherits them)."""
    return feedback_cutoff(load_dataset_configs(configs.dir("datasets")), version) is not None


def _ids(path, cls, attr: str) -> set[str]:
    return {getattr(r, attr) for r in read_records(cls, path)} if path.exists() else set()


@dg.asset(
    partitions_def=dataset_version_partitions,
    deps=[teacher_data, interactions],
    group_name="datasets",
    kinds={"parquet"},
    description="Problems of a dataset version: its parent's, its teachers' and its sources', deduplicated, "
    "split by problem.",
)
def problems(context: dg.AssetExecutionContext, storage: StorageResource, configs: ConfigsResource):
    version = context.partition_key
    path = configs.dir("datasets") / f"{version}.yaml"
    if not path.exists():
        raise dg.Failure(f"dataset version {version!r} has no config: create {path}")
    cfg = load_dataset_config(path)
    layout = storage.layout()
    parent: list[Problem] = []
    if cfg.parent:
        parent_path = layout.problems_path(cfg.parent)
        if not parent_path.exists():
            raise dg.Failure(f"{version} extends {cfg.parent}: materialize `problems` for {cfg.parent} first")
        parent = read_records(Problem, parent_path)
    teacher_path = layout.dataset_dir(version) / "teacher_problems.parquet"
    extra = read_records(Problem, teacher_path) if teacher_path.exists() else []
    feedback_path = layout.dataset_dir(version) / FEEDBACK_PROBLEMS
    feedback = read_records(Problem, feedback_path) if feedback_path.exists() else []
    if _has_feedback(configs, version):  # this version's feedback is the whole (current) accepted set
        parent = [p for p in parent if p.source != USER_SOURCE]
    rows = build_problems(cfg, parent, extra + feedback)
    before = _ids(layout.problems_path(version), Problem, "problem_id")
    write_records(rows, layout.problems_path(version), Problem)
    # a rebuild that drops problems (a user deleted their data) removes them from per-LLM data too
    removed = before - {p.problem_id for p in rows}
    purged = purge_derived(layout, version, problem_ids=removed)
    return dg.MaterializeResult(
        metadata={
            "num_problems": len(rows),
            "new_problems": len(rows) - len(parent),
            "user_problems": sum(p.source == USER_SOURCE for p in rows),
            "removed_by_rebuild": len(removed),
            "purged_downstream": dg.MetadataValue.json(purged),
            "by_source": md_table(dict(Counter(p.source for p in rows)), ("source", "problems")),
            "by_split": dg.MetadataValue.json(dict(Counter(p.split for p in rows))),
            "parent": cfg.parent or "",
            "path": dg.MetadataValue.path(str(layout.problems_path(version))),
        }
    )


@dg.asset(
    partitions_def=dataset_version_partitions,
    deps=[problems],
    group_name="datasets",
    kinds={"parquet"},
    description="Gold rationales segmented into steps and validated (sympy re-checks <<expr=value>>); "
    "invalid ones are kept as negatives. Writes the version manifest.",
)
def gold_cots(context: dg.AssetExecutionContext, storage: StorageResource, configs: ConfigsResource):
    version = context.partition_key
    layout = storage.layout()
    rows = read_records(Problem, layout.problems_path(version))
    cots = build_gold_cots(rows)
    teacher_path = layout.dataset_dir(version) / "teacher_cots.parquet"
    if teacher_path.exists():  # already validated by the teacher job (checks or agreement)
        cots += read_records(ChainOfThought, teacher_path)
    cfg = load_dataset_config(configs.dir("datasets") / f"{version}.yaml")
    feedback_path = layout.dataset_dir(version) / FEEDBACK_COTS
    if feedback_path.exists():  # validated by `interactions` (F14 feedback rules)
        cots += read_records(ChainOfThought, feedback_path)
    if cfg.parent and layout.cots_path(cfg.parent).exists():  # cumulative: keep the parent's chains too
        mine = {c.cot_id for c in cots}
        rebuilt = _has_feedback(configs, version)  # user chains come from this version's interactions only
        inherited = read_records(ChainOfThought, layout.cots_path(cfg.parent))
        cots = [c for c in inherited if c.cot_id not in mine and not (rebuilt and c.origin == USER_SOURCE)] + cots
    before = _ids(layout.cots_path(version), ChainOfThought, "cot_id")
    write_records(cots, layout.cots_path(version), ChainOfThought)
    purged = purge_derived(layout, version, cot_ids=before - {c.cot_id for c in cots})
    man = manifest(cfg, rows, cots)
    atomic_write_json(layout.manifest_path(version), man)
    return dg.MaterializeResult(
        metadata={
            "num_cots": len(cots),
            "num_valid": man["num_valid_cots"],
            "validation_rate": man["validation_rate"] or 0.0,
            "invalid_reasons": dg.MetadataValue.json(man["invalid_reasons"]),
            "user_chains": sum(c.origin == USER_SOURCE for c in cots),
            "purged_downstream": dg.MetadataValue.json(purged),
            "manifest": dg.MetadataValue.json(man),
        }
    )

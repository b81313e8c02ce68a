"""Dataset assets [dataset_version]: problems (cumulative, split by problem) and validated gold chains."""

from collections import Counter

import dagster as dg

from rjepa_assets.defs.metadata import md_table
from rjepa_assets.defs.partitions import dataset_version_partitions
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_assets.defs.teacher.assets import teacher_data
from rjepa_core.data.datasets import build_gold_cots, build_problems, load_dataset_config, manifest
from rjepa_core.io import atomic_write_json
from rjepa_core.schemas import ChainOfThought, Problem, read_records, write_records


@dg.asset(
    partitions_def=dataset_version_partitions,
    deps=[teacher_data],
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
    rows = build_problems(cfg, parent, extra)
    write_records(rows, layout.problems_path(version), Problem)
    return dg.MaterializeResult(
        metadata={
            "num_problems": len(rows),
            "new_problems": len(rows) - len(parent),
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
    if cfg.parent and layout.cots_path(cfg.parent).exists():  # cumulative: keep the parent's chains too
        mine = {c.cot_id for c in cots}
        cots = [c for c in read_records(ChainOfThought, layout.cots_path(cfg.parent)) if c.cot_id not in mine] + cots
    write_records(cots, layout.cots_path(version), ChainOfThought)
    man = manifest(cfg, rows, cots)
    atomic_write_json(layout.manifest_path(version), man)
    return dg.MaterializeResult(
        metadata={
            "num_cots": len(cots),
            "num_valid": man["num_valid_cots"],
            "validation_rate": man["validation_rate"] or 0.0,
            "invalid_reasons": dg.MetadataValue.json(man["invalid_reasons"]),
            "manifest": dg.MetadataValue.json(man),
        }
    )

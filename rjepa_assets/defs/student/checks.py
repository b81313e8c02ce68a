"""On-demand integrity check of every latent set: finds a corrupted or damaged shard file and says what to do.

The `latents` asset checks its own partition's values when it materializes; this check reads every set in
the store again (sha256 of each tensor file against its commit record, row counts, commit markers whose
tensor file is gone), so bit rot or a damaged copy after the fact shows up in the UI. Run it from the asset's
Checks tab, or `latents_integrity_job`.
"""

import dagster as dg

from rjepa_assets.defs.metadata import md_table
from rjepa_assets.defs.partitions import multi_key
from rjepa_assets.defs.resources import StorageResource
from rjepa_core.llm.resume import resume_folders
from rjepa_core.store.latents import LatentStore


def repair_hint(tag: str, version: str) -> str:
    key = multi_key(version, tag)
    return (
        f"re-materialize `latents` for partition {key} (Dagster UI: latents → Materialize → {key}, or "
        f"`dagster asset materialize -m rjepa_assets.definitions --select latents --partition '{key}'`): "
        "the set is re-extracted and swapped in whole"
    )


@dg.asset_check(
    asset="latents",
    description="Every shard of every latent set is whole: tensor sha256 and row counts as recorded at commit.",
)
def latents_shards_intact(storage: StorageResource) -> dg.AssetCheckResult:
    store = LatentStore(storage.layout())
    rows, damaged = [], []
    for tag, version in store.sets():
        problems = store.verify(tag, version)
        resumable = len(resume_folders(store.layout, tag, version))
        rows.append({"partition": str(multi_key(version, tag)), "shards": len(list(store.iter_shards(tag, version))),
                     "problems": len(problems), "resumable_runs": resumable})  # fmt: skip
        if problems:
            damaged.append(f"latents {multi_key(version, tag)}: {'; '.join(problems)} → {repair_hint(tag, version)}")
    return dg.AssetCheckResult(
        passed=not damaged,
        severity=dg.AssetCheckSeverity.ERROR,
        description="\n".join(damaged) or f"{len(rows)} latent set(s) intact",
        metadata={"problems": "\n".join(damaged) or "none", "sets": md_table(rows) if rows else "none"},
    )


latents_integrity_job = dg.define_asset_job(
    "latents_integrity_job",
    selection=dg.AssetSelection.checks(latents_shards_intact),
    description="Re-verify every latent shard (sha256, row counts) without re-materializing anything.",
)

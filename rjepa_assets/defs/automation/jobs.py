"""Jobs: the dataset job [dataset_version] and the per-LLM pipeline job [llm × dataset_version]."""

import dagster as dg

dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.assets("teacher_data", "interactions", "problems", "gold_cots"),
    description="Build a dataset version: teacher data (if any), validated user feedback (if the version has a "
    "feedback cutoff), problems and validated gold chains.",
)

llm_pipeline_job = dg.define_asset_job(
    "llm_pipeline_job",
    selection=dg.AssetSelection.assets("student_chains", "latents", "jepa_checkpoint", "latent_decoder", "eval_report"),
    description="For one LLM and dataset version: chains → latents → checkpoint (+ latent decoder) → eval report.",
)

modes_job = dg.define_asset_job(
    "modes_job",
    selection=dg.AssetSelection.assets("modes_report"),
    description="For one LLM and dataset version: OFF vs RERANK vs NUDGE vs PLAN on the test split (slow: the "
    "student writes every NUDGE and PLAN chain; `limit` in the config caps the problems).",
)

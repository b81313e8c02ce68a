"""The one place that defines partitions: dynamic `dataset_version`, dynamic `llm`, and their product.

Multi-partition keys order dimensions alphabetically: "v1|smollm2-135m" is dataset_version|llm.
"""

from __future__ import annotations

import dagster as dg

DATASET_VERSION = "dataset_version"
LLM = "llm"

dataset_version_partitions = dg.DynamicPartitionsDefinition(name=DATASET_VERSION)
llm_partitions = dg.DynamicPartitionsDefinition(name=LLM)
llm_x_version = dg.MultiPartitionsDefinition({DATASET_VERSION: dataset_version_partitions, LLM: llm_partitions})

# Per-LLM assets read the dataset assets of their dataset_version dimension.
by_version = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATASET_VERSION)


def multi_key(version: str, llm_tag: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATASET_VERSION: version, LLM: llm_tag})


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(dataset_version, llm_tag) of a multi-partition key."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        version, llm_tag = str(key).split("|")
        dims = {DATASET_VERSION: version, LLM: llm_tag}
    return dims[DATASET_VERSION], dims[LLM]

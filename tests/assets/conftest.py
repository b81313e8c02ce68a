"""A complete, tiny project for Dagster tests: configs (tiny LLM registry, small dataset versions,
tiny R-JEPA preset) and storage in tmp, wired into the real Definitions through resources."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

TINY_RJEPA = {
    "model": {"preset": "tiny"},
    "optim": {"total_steps": 30, "warmup_steps": 5, "lr": 1e-3},
    "train": {"batch_size": 16, "val_every": 10, "patience": 0, "checkpoint_every": 0},
}

# Small enough for seconds on 2 cores; real chain_sum problems with derived gold chains.
V1 = {
    "version": "v1",
    "sources": [
        {
            "kind": "reasoning_gym",
            "task": "chain_sum",
            "size": 16,
            "seed": 1,
            "params": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1},
        },
    ],
}
V2 = {
    "version": "v2",
    "parent": "v1",
    "sources": [{"kind": "reasoning_gym", "task": "basic_arithmetic", "size": 6, "seed": 2}],
}

FAST_RUN_CONFIG = {
    "ops": {
        "student_chains": {"config": {"k": 2, "k_test": 3, "max_new_tokens": 12}},
        "eval_report": {"config": {"ks": [2, 3], "bootstrap": 100}},
        "latent_decoder": {"config": {"steps": 60, "d_model": 32}},
    }
}


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path, tiny_llm_dir):
    """(resources, configs_dir, storage_root) for a tmp project with LLM `tiny` and dataset v1."""
    from rjepa_assets.defs.resources import ConfigsResource, StorageResource, StudentLLMResource

    configs = tmp_path / "configs"
    write_yaml(
        configs / "llms" / "tiny.yaml",
        {"llm_tag": "tiny", "source": str(tiny_llm_dir), "hidden_size": 64, "batch_size": 8},
    )
    write_yaml(configs / "datasets" / "v1.yaml", V1)
    write_yaml(configs / "rjepa" / "default.yaml", TINY_RJEPA)
    store = tmp_path / "store"
    resources = {
        "storage": StorageResource(root=str(store)),
        "configs": ConfigsResource(root=str(configs)),
        "student_llm": StudentLLMResource(registry_dir=str(configs / "llms"), device="cpu"),
    }
    return resources, configs, store


@pytest.fixture
def defs(project):
    from rjepa_assets.definitions import build_defs

    return build_defs(project[0])


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


# The real OpenAI-compatible test server of the teacher tests, for the teacher_data asset tests.
from tests.core.teacher.conftest import _server, fake_server  # noqa: E402, F401

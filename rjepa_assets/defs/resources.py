"""Resources: storage (layout + DuckDB index), the student LLM registry/loader, and config folders."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from rjepa_core.learning.config import LoopConfig, load_loop_config
from rjepa_core.llm.registry import LLMSpec, load_registry
from rjepa_core.store.layout import StorageLayout, local_root

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default(env: str, rel: str) -> str:
    return os.environ.get(env) or str(PROJECT_ROOT / rel)


class StorageResource(dg.ConfigurableResource):
    """Where datasets, latents, checkpoints and reports live: a local folder, file:// URI or s3://bucket/prefix.

    With s3:// every `layout()` pulls what changed in the bucket into the local cache and every artefact the
    step commits is published (rjepa_core.store.remote).
    """

    root: str = ""  # empty = $RJEPA_STORAGE or <project>/.rjepa/store

    def uri(self) -> str:
        return self.root or _default("RJEPA_STORAGE", ".rjepa/store")

    def layout(self, only: tuple[str, ...] = ()) -> StorageLayout:
        """The layout; for object storage pulled first: everything, or only the top-level folders `only`
        (sensors that tick every minute read interactions, not latents)."""
        layout = StorageLayout(self.uri(), pull=not only)
        if only:
            layout.pull(*(layout.root / name for name in only))
        return layout


class ConfigsResource(dg.ConfigurableResource):
    """Folder holding llms/, datasets/ and rjepa/ YAML configs."""

    root: str = ""  # empty = $RJEPA_CONFIGS or <project>/configs

    def dir(self, name: str) -> Path:
        return Path(self.root or _default("RJEPA_CONFIGS", "configs")) / name

    def registry(self) -> dict[str, LLMSpec]:
        return load_registry(self.dir("llms"))

    def loop(self) -> LoopConfig:
        """The learning-loop settings, `learning_loop.yaml` (defaults when absent)."""
        return load_loop_config(self.dir("learning_loop.yaml"))


class TrainingResource(dg.ConfigurableResource):
    """How `jepa_checkpoint` trains: in the run's process (nproc=1) or data-parallel on nproc processes.

    nproc > 1 starts `torchrun --standalone --nproc-per-node nproc -m rjepa_core.jepa.ddp` (DDP: gloo on
    CPU, nccl with one GPU per process) and streams its output into the run's logs.
    """

    nproc: int = 1  # processes (GPUs) per training run; 1 keeps training in the run's own process

    def checked_nproc(self) -> int:
        if self.nproc < 1:
            raise dg.Failure(f"training.nproc must be >= 1 (processes per training run), got {self.nproc}")
        return self.nproc


@functools.lru_cache(maxsize=2)
def _load_student(spec_key: str, device: str):
    from rjepa_core.llm.adapter import StudentLLM

    spec = LLMSpec(**json.loads(spec_key))
    return StudentLLM.load(spec, device=device)


class StudentLLMResource(dg.ConfigurableResource):
    """Loads a registered student LLM once per process (a backfill run reuses it across partitions)."""

    registry_dir: str = ""  # empty = $RJEPA_CONFIGS/llms or <project>/configs/llms
    device: str = "auto"
    batch_size: int = 0  # 0 = the registry entry's batch size

    def spec(self, llm_tag: str) -> LLMSpec:
        registry = load_registry(self.registry_dir or Path(_default("RJEPA_CONFIGS", "configs")) / "llms")
        if llm_tag not in registry:
            raise dg.Failure(
                f"llm {llm_tag!r} is not in the registry ({', '.join(sorted(registry))}): "
                f"add configs/llms/{llm_tag}.yaml"
            )
        spec = registry[llm_tag]
        if self.batch_size:
            spec.batch_size = self.batch_size
        return spec

    def load(self, llm_tag: str):
        spec = self.spec(llm_tag)
        # the spec as canonical JSON: hashable although `few_shot` holds lists and mappings
        return _load_student(json.dumps(spec.to_dict(), sort_keys=True), self.device)


def duckdb_resource() -> DuckDBResource:
    """The DuckDB index file of the storage root (for s3:// roots, in the local cache: its views name local paths)."""
    return DuckDBResource(database=str(local_root(_default("RJEPA_STORAGE", ".rjepa/store")) / "index.duckdb"))

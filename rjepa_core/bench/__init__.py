"""Benchmarks (SPEC §7): measured, written to JSON, never asserted in unit tests.

    >>> from rjepa_core.bench import run_benchmark
    >>> result = run_benchmark("extraction", quick=True)      # bench/results/extraction.json

Names: extraction (pipeline vs naive loop), training (sequences/s, data wait share), scoring
(JEPA rerank overhead vs generation), generation (batched vs one-at-a-time tokens/s), ddp (1 vs 2
torchrun processes: loss trajectory difference and wall times).
`quick=True` uses a tiny random model and finishes in seconds; the default uses SmolLM2-135M.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = ("extraction", "training", "scoring", "generation", "ddp")


def _runner(name: str) -> Callable[..., dict[str, Any]]:
    if name == "extraction":
        from rjepa_core.bench.extraction import bench_extraction

        return bench_extraction
    if name == "training":
        from rjepa_core.bench.training import bench_training

        return bench_training
    if name == "scoring":
        from rjepa_core.bench.scoring import bench_scoring

        return bench_scoring
    if name == "generation":
        from rjepa_core.bench.generation import bench_generation

        return bench_generation
    if name == "ddp":
        from rjepa_core.bench.ddp import bench_ddp

        return bench_ddp
    raise ValueError(f"unknown benchmark {name!r}; use one of {BENCHMARKS}")


def run_benchmark(name: str, out_dir: str | Path = "bench/results", quick: bool = False, **kw: Any) -> dict[str, Any]:
    """Run one benchmark and write <out_dir>/<name>.json atomically; returns what was written."""
    from rjepa_core.bench.common import write_result

    result = _runner(name)(quick=quick, **kw)
    return write_result(name, result, out_dir, quick)

"""Shared pieces of the benchmarks: machine facts, the student under test, sample chains, result files.

    >>> llm, model_name = load_student(quick=True)          # tiny random Llama, built in a temp dir
    >>> items = sample_items(llm, 4, seed=0)                # [(prompt, steps)] arithmetic chains
    >>> write_result("demo", {"x": 1}, "bench/results")     # bench/results/demo.json, atomic

Every result file records the machine, the command and the time it was taken.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rjepa_core.io import atomic_write_json

# Dense bf16 peak FLOP/s by GPU name fragment, for model FLOP utilisation (no sparsity).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def machine_info(device: Any = None) -> dict[str, Any]:
    import torch
    import transformers

    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"),
        "cuda_available": torch.cuda.is_available(),
        # other work on the machine while it ran (1-minute load average when the result is written)
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_flops(device: Any) -> float | None:
    """Dense bf16 peak of the GPU behind `device`, None on CPU or an unknown GPU."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def sync(device: Any) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def timer(device: Any, out: dict[str, float], key: str):
    sync(device)
    tic, cpu = time.perf_counter(), time.process_time()
    yield
    sync(device)
    out[key] = time.perf_counter() - tic
    out[f"{key}_cpu"] = time.process_time() - cpu  # this process's CPU seconds (all threads): less hurt by neighbours


def load_student(quick: bool, device: str = "auto", batch_size: int = 8):
    """(StudentLLM, description): the tiny random Llama when quick, else SmolLM2-135M-Instruct."""
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    if quick:
        from rjepa_core.llm.testing import build_tiny_llm

        path = build_tiny_llm(Path(tempfile.mkdtemp(prefix="rjepa-bench-")) / "tiny")
        spec = LLMSpec(llm_tag="tiny", source=str(path), batch_size=batch_size, hidden_size=64)
        return StudentLLM.load(spec, device=device), "tiny random Llama (hidden 64, 4 layers)"
    from rjepa_core.llm.embedded import smollm2_dir

    spec = LLMSpec(llm_tag="smollm2-135m", source=str(smollm2_dir()), batch_size=batch_size, hidden_size=576)
    return StudentLLM.load(spec, device=device), "SmolLM2-135M-Instruct (hidden 576, 30 layers)"


def sample_statements(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b, c = (int(x) for x in rng.integers(2, 30, size=3))
        out.append(f"Tom has {a} apples. He buys {b} more and gives {c} away. How many apples does he have now?")
    return out


def few_shot_examples() -> list:
    """Two worked examples in the "Step k:" format, as a dataset version with `few_shot: 2` shows the student
    (ms1, ms2): the prompts of the benchmarks that mirror the pipeline's sampling and the service's RERANK."""
    from rjepa_core.llm.prompting import Example

    return [
        Example(sample_statements(1, seed=11)[0], ["Tom starts with 14 apples.", "14 + 9 = 23", "23 - 6 = 17"], "17"),
        Example("Calculate 7 + 5 - 3.", ["7 + 5 = 12", "12 - 3 = 9"], "9"),
    ]


def sample_items(llm, n: int, seed: int = 0, per_prompt: int = 1) -> list[tuple[str, list[str]]]:
    """n (prompt, steps) arithmetic chains of 3-6 steps, as the pipeline extracts them.

    per_prompt > 1 gives groups of that many different chains under one prompt, like the K samples
    (plus the gold chain) the pipeline extracts per problem.
    """
    if per_prompt < 1:
        raise ValueError(f"per_prompt must be >= 1, got {per_prompt}")
    rng = np.random.default_rng(seed)
    statements = sample_statements(-(-n // per_prompt), seed)
    items = []
    for i in range(n):
        total = int(rng.integers(5, 40))
        steps = []
        for _ in range(int(rng.integers(3, 7))):
            x = int(rng.integers(1, 20))
            steps.append(f"Tom now adds {x} apples to the {total} he had, so {total} + {x} = {total + x} apples.")
            total += x
        items.append((llm.prompt_for(statements[i // per_prompt]), steps))
    return items


def write_result(name: str, result: dict[str, Any], out_dir: str | Path, quick: bool) -> dict[str, Any]:
    """Add machine info, command and time; write <out_dir>/<name>.json atomically; return the result."""
    full = {
        "benchmark": name,
        "quick": quick,
        "created_at": datetime.now(UTC).isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
        "call": f"run_benchmark({name!r}, quick={quick})",
        **result,
    }
    full.setdefault("machine", machine_info(result.get("device")))
    atomic_write_json(Path(out_dir) / f"{name}.json", full)
    return full

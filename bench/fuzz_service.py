"""Fuzz every route of the service with schemathesis: ≥ 10,000 generated requests, valid and invalid, 0 × 5xx.

    .venv/bin/python bench/fuzz_service.py                        # tiny student + tiny checkpoint, ~10k requests
    .venv/bin/python bench/fuzz_service.py --requests 200         # a quick look
    rjepa bench fuzz                                              # the same, through the CLI

The server is the one `bench/load_service.py` starts (a separate uvicorn process on 127.0.0.1, a tiny random
student, a tiny published checkpoint) plus a tiny latent decoder, with the generation caps tightened so that
generated /chat and /rerank requests stay short. Every operation of its OpenAPI schema is fuzzed in rounds,
positive (valid by the schema) then negative (invalid) cases, each round with its own Hypothesis seed, until --requests
requests were sent. A case's response is never asserted on inside Hypothesis (that would stop at the
first failure and shrink); every 5xx is recorded with the request that caused it and the server's log tail.
Writes bench/results/fuzz.json: requests sent per operation and mode, status counts, 5xx samples, time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_service import build_tiny_store, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("/chat", "/rerank", "/decode")  # each positive case runs the student: fewer of them per round


def save_tiny_decoder(storage: Path, llm_dir: Path, hidden: int) -> None:
    """A latent decoder for the published checkpoint (llm tiny, version v1), so /decode is served, not 503."""
    import numpy as np
    from transformers import AutoTokenizer

    from rjepa_core.jepa.decoder import DecoderConfig, StepPair, train_decoder
    from rjepa_core.store.layout import StorageLayout

    ids = AutoTokenizer.from_pretrained(llm_dir)("3 + 4 = 7", add_special_tokens=False)["input_ids"]
    Z = np.random.default_rng(1).standard_normal((32, hidden)).astype(np.float32)  # (pairs, hidden)
    pairs = [StepPair(z, ids) for z in Z]
    cfg = DecoderConfig(d_model=32, n_layers=1, n_heads=2, steps=60, batch_size=16, val_every=30, patience=10,
                        warmup_steps=10, max_tokens=16, dropout=0.0)  # fmt: skip
    train_decoder(pairs, pairs[:4], cfg).save(StorageLayout(storage).decoder_dir("tiny", "v1"), llm_tag="tiny")


def start_server(storage: Path, llm_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "RJEPA_STORAGE": str(storage),
        "RJEPA_LLM_TAG": "tiny",
        "RJEPA_LLM_SOURCE": str(llm_dir),
        "RJEPA_DEVICE": "cpu",
        "RJEPA_TORCH_THREADS": "1",
        "RJEPA_RELOAD_INTERVAL_S": "0",
        "RJEPA_MAX_CANDIDATES": "3",
        "RJEPA_MAX_NEW_TOKENS": "8",
        "RJEPA_DEFAULT_NEW_TOKENS": "4",
        "RJEPA_MAX_SEQUENCES": "8",
        "RJEPA_MAX_STEPS": "16",
        "RJEPA_GENERATION_TIMEOUT_S": "60",
        "RJEPA_INTERACTIONS_SALT": "fuzz",
        "RJEPA_ADMIN_TOKEN": "fuzz-admin",
    }
    code = f"from rjepa_serve.app import serve; serve('127.0.0.1', {port})"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen) -> dict:
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.get(url + "/health", timeout=2).json()
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the server did not start")
            time.sleep(0.3)


def _runner(op, mode, n: int, seed_value: int, url: str, key, label, record):
    """A Hypothesis test that sends n generated cases of one operation and mode to `record` (never fails)."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    @seed(seed_value)
    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.generate])  # fmt: skip
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        record(case, key, label)

    return run


def fuzz(url: str, target: int, log_path: Path, per_round: int) -> dict:
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    sent: Counter = Counter()
    statuses: Counter = Counter()
    by_op: dict[str, Counter] = {}
    server_errors: list[dict] = []
    transport_errors: list[str] = []
    exhausted: set[tuple[str, str]] = set()  # (operation, mode) that generated nothing new in a round
    unsatisfiable: set[tuple[str, str]] = set()
    rounds = 0

    def record(case, key: tuple[str, str], label: str) -> None:
        sent[key] += 1
        try:
            response = case.call(base_url=url, timeout=90)
        except Exception as exc:  # a dropped connection or a timeout: as bad as a 5xx
            transport_errors.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
            statuses["transport_error"] += 1
            return
        code = response.status_code
        statuses[str(code)] += 1
        by_op.setdefault(label, Counter())[str(code)] += 1
        if code >= 500 and len(server_errors) < 20:
            request = case.as_curl_command()[:1500]
            row = {"operation": label, "mode": key[1], "status": code, "request": request}
            server_errors.append({**row, "response": response.text[:500]})

    start = time.perf_counter()
    while sum(sent.values()) < target and rounds < 1000:
        rounds += 1
        progress = sum(sent.values())
        for op in ops:
            label = f"{op.method.upper()} {op.path}"
            has_input = bool(op.body) or any(True for _ in op.iter_parameters())
            modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,)
            for mode in modes:
                key = (label, mode.value)
                if key in exhausted or sum(sent.values()) >= target:
                    continue
                n = max(per_round // 4, 1) if op.path in HEAVY and mode == GenerationMode.POSITIVE else per_round
                before = sent[key]

                run = _runner(op, mode, n, rounds * 7919 + len(sent), url, key, label, record)
                try:
                    run()
                except Unsatisfiable:  # e.g. no invalid value exists for a path parameter typed as any string
                    unsatisfiable.add(key)
                    exhausted.add(key)
                if sent[key] == before:
                    exhausted.add(key)
        if sum(sent.values()) == progress:
            break  # nothing generates any more
    wall = time.perf_counter() - start
    n5 = sum(v for k, v in statuses.items() if k.isdigit() and k.startswith("5"))
    if server_errors:
        server_errors[0]["server_log_tail"] = log_path.read_text()[-3000:]
    return {
        "n_requests": sum(sent.values()),
        "n_5xx": n5,
        "n_transport_errors": statuses.get("transport_error", 0),
        "operations": sorted(f"{op.method.upper()} {op.path}" for op in ops),
        "rounds": rounds,
        "wall_s": round(wall, 1),
        "requests_per_s": round(sum(sent.values()) / wall, 1) if wall > 0 else None,
        "status": dict(sorted(statuses.items())),
        "by_operation": {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())},
        "sent_by_operation_and_mode": {f"{op} [{m}]": n for (op, m), n in sorted(sent.items())},
        "not_generated": sorted(f"{op} [{m}]" for op, m in unsatisfiable),  # no such case exists
        "server_errors": server_errors,
        "transport_error_samples": transport_errors[:10],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000, help="stop after this many generated requests")
    ap.add_argument("--per-round", type=int, default=100, help="examples per operation and mode in one round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    args = ap.parse_args()

    import schemathesis

    with tempfile.TemporaryDirectory(prefix="rjepa-fuzz-") as tmp:
        llm_dir, hidden = build_tiny_store(Path(tmp))
        save_tiny_decoder(Path(tmp) / "store", llm_dir, hidden)
        log_path = Path(tmp) / "server.log"
        server, url = start_server(Path(tmp) / "store", llm_dir, log_path)
        try:
            health = wait_ready(url, server)
            if health["status"] != "ok":
                sys.exit(f"the server has no model: {health['message']}")
            result = fuzz(url, args.requests, log_path, args.per_round)
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = {
        "benchmark": "fuzz",
        "command": "python bench/fuzz_service.py " + " ".join(sys.argv[1:]),
        "tool": f"schemathesis {schemathesis.__version__ if hasattr(schemathesis, '__version__') else ''}".strip(),
        "server": "uvicorn, 1 process, 127.0.0.1, tiny random student + tiny checkpoint (bench/load_service.py)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
        "targets": {
            ">= 10,000 requests": result["n_requests"] >= 10_000,
            "0 x 5xx": result["n_5xx"] == 0 and result["n_transport_errors"] == 0,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("by_operation", "server_errors")}, indent=2))
    if result["server_errors"]:
        print(json.dumps(result["server_errors"][:3], indent=2))
    if result["n_5xx"] or result["n_transport_errors"]:
        sys.exit(f"{result['n_5xx']} server error(s), {result['n_transport_errors']} transport error(s)")


if __name__ == "__main__":
    main()

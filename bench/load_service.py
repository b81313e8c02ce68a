"""Bounded load test of the service: 16 concurrent clients on 127.0.0.1 against /score and /chat.

    .venv/bin/python bench/load_service.py                       # tiny student + tiny checkpoint, ~1 min
    .venv/bin/python bench/load_service.py --storage .rjepa/store --llm-tag smollm2-135m --chat-per-client 1

Without --storage it builds a throwaway storage root: a tiny random Llama student (hidden 64) and a
tiny R-JEPA trained for a few steps on random latents, published through the LATEST pointer exactly
as the `jepa_checkpoint` asset does. The server runs as a separate `uvicorn` process configured only
through RJEPA_* environment variables (as `rjepa serve` would be), bound to 127.0.0.1. Each client
sends its /score requests and then its /chat requests; the run stops after --max-seconds whatever
is left. Writes bench/results/service_load.json (p50/p99 latency per endpoint, errors, throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_store(root: Path) -> tuple[Path, int]:
    """Tiny student folder + a published tiny checkpoint under root; returns (student dir, hidden size)."""
    from rjepa_core.config import RJEPAConfig, rjepa_tiny
    from rjepa_core.jepa.calibration import fit_calibration
    from rjepa_core.jepa.checkpoint import load_checkpoint, update_meta
    from rjepa_core.jepa.collate import Chain
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.jepa.trainer import train
    from rjepa_core.llm.testing import build_tiny_llm
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.pointers import publish_latest_checkpoint

    hidden = 64
    llm_dir = build_tiny_llm(root / "tiny-llm", hidden_size=hidden)
    rng = np.random.default_rng(0)
    chains = [
        Chain(rng.standard_normal((int(rng.integers(3, 7)), hidden)).astype("float16"), "math") for _ in range(32)
    ]
    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=hidden)).replace(
        optim={"total_steps": 10, "warmup_steps": 2}, train={"batch_size": 8, "val_every": 5}
    )
    layout = StorageLayout(root / "store")
    result = train(
        cfg, chains[:24], chains[24:], layout.checkpoint_dir("tiny", "v1", "bench"), resume=False, device="cpu"
    )
    cal = fit_calibration(JEPAScorer.from_checkpoint(load_checkpoint(result.checkpoint_dir)), chains[24:])
    meta = update_meta(result.checkpoint_dir, calibration=cal.to_dict(), llm_tag="tiny", layer_idx=-2)
    publish_latest_checkpoint(layout, "tiny", "v1", "bench", {**meta, "path": str(result.checkpoint_dir)})
    return llm_dir, hidden


def percentile_ms(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 1) if xs else None


async def run_clients(url: str, hidden: int, args: argparse.Namespace) -> dict:
    import httpx

    lat: dict[str, list[float]] = {"score": [], "chat": []}
    errors: dict[str, list[str]] = {"score": [], "chat": []}
    deadline = time.monotonic() + args.max_seconds
    prompts = ["What is 3 + 4?", "Tom has 12 apples and eats 5. How many are left?", "Compute 8 + 6 - 3."]

    async def one(client: httpx.AsyncClient, kind: str, body: dict) -> None:
        t = time.perf_counter()
        try:
            r = await client.post(f"/{kind}", json=body)
            ok = r.status_code == 200
            if not ok:
                errors[kind].append(f"{r.status_code}: {r.text[:200]}")
        except httpx.HTTPError as exc:
            ok = False
            errors[kind].append(f"{type(exc).__name__}: {exc}")
        if ok:
            lat[kind].append(time.perf_counter() - t)

    async def client_task(n: int) -> None:
        rng = np.random.default_rng(n)
        async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as client:
            for _ in range(args.score_per_client):
                if time.monotonic() > deadline:
                    return
                seqs = [{"latents": rng.standard_normal((int(rng.integers(3, 9)), hidden)).round(4).tolist()}]
                await one(client, "score", {"sequences": seqs * args.chains_per_score})
            for i in range(args.chat_per_client):
                if time.monotonic() > deadline:
                    return
                mode = "RERANK" if (n + i) % 2 else "OFF"
                body = {
                    "prompt": prompts[(n + i) % 3],
                    "mode": mode,
                    "k": args.k,
                    "seed": n * 100 + i,
                    "max_new_tokens": args.max_new_tokens,
                }
                await one(client, "chat", body)

    start = time.perf_counter()
    await asyncio.gather(*(client_task(n) for n in range(args.clients)))
    wall = time.perf_counter() - start
    out = {}
    for kind in ("score", "chat"):
        out[kind] = {
            "ok": len(lat[kind]),
            "errors": len(errors[kind]),
            "error_samples": errors[kind][:5],
            "p50_ms": percentile_ms(lat[kind], 50),
            "p99_ms": percentile_ms(lat[kind], 99),
            "mean_ms": round(float(np.mean(lat[kind]) * 1000), 1) if lat[kind] else None,
        }
    out["wall_s"] = round(wall, 2)
    out["throughput_rps"] = round(sum(len(v) for v in lat.values()) / wall, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storage", help="storage root with a published checkpoint (default: build a tiny one)")
    ap.add_argument("--llm-tag", default="tiny")
    ap.add_argument("--llm-source", help="student folder/source override (set automatically for the tiny store)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--score-per-client", type=int, default=8)
    ap.add_argument("--chains-per-score", type=int, default=4, help="chains per /score request")
    ap.add_argument("--chat-per-client", type=int, default=2)
    ap.add_argument("--k", type=int, default=4, help="candidates in RERANK chats")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--max-seconds", type=float, default=240, help="stop sending after this long")
    ap.add_argument("--timeout", type=float, default=180, help="client timeout per request")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the server")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "service_load.json"))
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="rjepa-load-")
    hidden = None
    if args.storage:
        storage = Path(args.storage)
    else:
        llm_dir, hidden = build_tiny_store(Path(tmp.name))
        storage, args.llm_source = Path(tmp.name) / "store", str(llm_dir)
    if hidden is None:
        from rjepa_core.store.layout import StorageLayout
        from rjepa_core.store.pointers import read_latest_checkpoint

        pointer = read_latest_checkpoint(StorageLayout(storage), args.llm_tag)
        if pointer is None:
            sys.exit(f"no checkpoint published for {args.llm_tag} under {storage}: materialize jepa_checkpoint first")
        hidden = int(json.loads((Path(pointer["path"]) / "meta.json").read_text())["hidden_size"])

    port = free_port()
    env = {
        **os.environ,
        "RJEPA_STORAGE": str(storage),
        "RJEPA_LLM_TAG": args.llm_tag,
        "RJEPA_DEVICE": "cpu",
        "RJEPA_TORCH_THREADS": str(args.threads),
        "RJEPA_RELOAD_INTERVAL_S": "0",
        "RJEPA_MAX_CANDIDATES": str(max(args.k, 1)),
        "RJEPA_GENERATION_TIMEOUT_S": str(args.timeout),
        "RJEPA_INTERACTIONS_SALT": "load-test",
    }
    if args.llm_source:
        env["RJEPA_LLM_SOURCE"] = args.llm_source
    code = f"from rjepa_serve.app import serve; serve('127.0.0.1', {port})"
    server = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the server did not start")
                time.sleep(0.3)
        if health["status"] != "ok":
            sys.exit(f"the server has no model: {health['message']}")
        result = asyncio.run(run_clients(url, hidden, args))
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()

    report = {
        "benchmark": "service_load",
        "server": "uvicorn, 1 process, 127.0.0.1; student calls serialised on one thread, latent scoring on another",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": args.threads},
        "checkpoint_id": health["checkpoint_id"],
        "llm_tag": health["llm_tag"],
        "hidden_size": hidden,
        "clients": args.clients,
        "requests_per_client": {"score": args.score_per_client, "chat": args.chat_per_client},
        "chains_per_score": args.chains_per_score,
        "chat": {"k_rerank": args.k, "max_new_tokens": args.max_new_tokens, "modes": "alternating OFF / RERANK"},
        "results": result,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["results"], indent=2))
    if result["score"]["errors"] or result["chat"]["errors"]:
        sys.exit("errors during the load test (see error_samples)")


if __name__ == "__main__":
    main()

"""Load test of the service: 16 concurrent clients for 60 s on 127.0.0.1 against /score and /chat RERANK.

    .venv/bin/python bench/load_service.py                        # tiny student + tiny checkpoint, ~75 s
    .venv/bin/python bench/load_service.py --duration 5 --burst 8 # a quick look
    .venv/bin/python bench/load_service.py --storage .rjepa/store --llm-tag smollm2-135m
    rjepa bench load                                              # the same, through the CLI

Without --storage it builds a throwaway storage root: a tiny random Llama student (hidden 64) and a
tiny R-JEPA trained for a few steps on random latents, published through the LATEST pointer exactly
as the `jepa_checkpoint` asset does. The server runs as a separate `uvicorn` process configured only
through RJEPA_* environment variables (as `rjepa serve` would be), bound to 127.0.0.1.

Phase 1: --clients clients for --duration seconds, each sending the --mix kinds in turn (/score on latents,
/score on text, /chat RERANK), one request at a time. The server's resident memory is sampled every second.
Phase 2: --burst RERANK chats at once, more than the generation queue's bound: those past it must get 429
with Retry-After at once (never hang), and the service must answer the next request. Writes
bench/results/service_load.json: n_requests, n_5xx, n_429, p50_ms, p99_ms, RSS start/end, per kind and for
the burst, and which targets were met.
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


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (VmRSS from /proc), in MiB; None where /proc is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


PROMPTS = ["What is 3 + 4?", "Tom has 12 apples and eats 5. How many are left?", "Compute 8 + 6 - 3."]
TEXT_STEPS = [
    ["3 + 4 = 7", "The answer is 7."],
    ["12 - 5 = 7", "Tom has 7 apples left."],
    ["8 + 6 = 14", "14 - 3 = 11"],
]
KINDS = ("score_latents", "score_text", "chat_rerank", "chat_off")


def request_body(kind: str, n: int, i: int, hidden: int, rng, args: argparse.Namespace) -> tuple[str, dict]:
    """(route, JSON body) of the i-th request of client n."""
    if kind == "score_latents":
        seqs = [{"latents": rng.standard_normal((int(rng.integers(3, 9)), hidden)).round(4).tolist()}]
        return "/score", {"sequences": seqs * args.chains_per_score}
    if kind == "score_text":
        j = (n + i) % 3
        return "/score", {"question": PROMPTS[j], "steps": TEXT_STEPS[j]}
    mode = "RERANK" if kind == "chat_rerank" else "OFF"
    body = {"prompt": PROMPTS[(n + i) % 3], "mode": mode, "k": args.k, "seed": n * 1000 + i,
            "max_new_tokens": args.max_new_tokens}  # fmt: skip
    return "/chat", body


class Tally:
    """Outcomes and latencies per request kind."""

    def __init__(self, kinds) -> None:
        self.lat = {k: [] for k in kinds}  # seconds of the 200 answers
        self.codes = {k: {} for k in kinds}  # status code (or exception name) -> count
        self.samples = {k: [] for k in kinds}  # first few non-200 answers
        self.refusal_s: list[float] = []  # time to a 429
        self.retry_after: list[str | None] = []  # the Retry-After header of each 429

    def add(self, kind: str, code: str, seconds: float, text: str = "", retry_after: str | None = None) -> None:
        self.codes[kind][code] = self.codes[kind].get(code, 0) + 1
        if code == "200":
            self.lat[kind].append(seconds)
            return
        if code == "429":
            self.refusal_s.append(seconds)
            self.retry_after.append(retry_after)
        elif len(self.samples[kind]) < 5:
            self.samples[kind].append(f"{code}: {text[:200]}")

    def summary(self, wall: float) -> dict:
        out: dict = {"by_kind": {}}
        every: list[float] = []
        total = {"n_requests": 0, "n_ok": 0, "n_5xx": 0, "n_429": 0, "n_other_errors": 0}
        for kind, codes in self.codes.items():
            n = sum(codes.values())
            if not n:
                continue
            n5 = sum(v for c, v in codes.items() if c.isdigit() and c.startswith("5"))
            n429, ok = codes.get("429", 0), codes.get("200", 0)
            row = {"n_requests": n, "n_ok": ok, "n_5xx": n5, "n_429": n429, "n_other_errors": n - ok - n5 - n429,
                   "status": dict(sorted(codes.items())), "error_samples": self.samples[kind],
                   "p50_ms": percentile_ms(self.lat[kind], 50), "p99_ms": percentile_ms(self.lat[kind], 99),
                   "mean_ms": round(float(np.mean(self.lat[kind]) * 1000), 1) if self.lat[kind] else None}  # fmt: skip
            out["by_kind"][kind] = row
            every += self.lat[kind]
            for key in total:
                total[key] += row[key]
        out.update(total)
        out["p50_ms"], out["p99_ms"] = percentile_ms(every, 50), percentile_ms(every, 99)
        out["wall_s"] = round(wall, 2)
        out["served_per_s"] = round(total["n_ok"] / wall, 2) if wall > 0 else None
        return out


async def _send(client, tally: Tally, kind: str, route: str, body: dict) -> None:
    import httpx

    t = time.perf_counter()
    try:
        r = await client.post(route, json=body)
        code, text, retry = str(r.status_code), r.text, r.headers.get("retry-after")
    except httpx.HTTPError as exc:
        code, text, retry = type(exc).__name__, str(exc), None
    tally.add(kind, code, time.perf_counter() - t, text, retry)


async def run_load(url: str, hidden: int, args: argparse.Namespace, server_pid: int) -> dict:
    """--clients clients for --duration seconds, each sending the --mix kinds in turn (a new one when one ends)."""
    import httpx

    mix = [k for k in args.mix.split(",") if k]
    tally = Tally(KINDS)
    rss: list[tuple[float, float | None]] = []
    start = time.monotonic()
    deadline = start + args.duration

    async def client_task(n: int) -> None:
        rng = np.random.default_rng(n)
        async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as client:
            i = 0
            while time.monotonic() < deadline:
                kind = mix[(n + i) % len(mix)]
                route, body = request_body(kind, n, i, hidden, rng, args)
                await _send(client, tally, kind, route, body)
                i += 1

    async def sample_rss() -> None:
        while time.monotonic() < deadline:
            rss.append((round(time.monotonic() - start, 1), rss_mb(server_pid)))
            await asyncio.sleep(1.0)

    t0 = time.perf_counter()
    await asyncio.gather(sample_rss(), *(client_task(n) for n in range(args.clients)))
    out = tally.summary(time.perf_counter() - t0)
    values = [m for _, m in rss if m is not None]
    out["rss_mb"] = {"start": values[0] if values else None, "end": rss_mb(server_pid),
                     "max": max(values) if values else None, "samples": len(values)}  # fmt: skip
    if values and out["rss_mb"]["end"] is not None:
        # growth over the second half of the run (after warm-up allocations): a leak keeps growing there
        half = values[len(values) // 2]
        out["rss_mb"]["growth_second_half"] = round(out["rss_mb"]["end"] - half, 1)
    return out


async def run_burst(url: str, hidden: int, args: argparse.Namespace) -> dict:
    """--burst concurrent RERANK chats at once (past the generation queue's bound), then one more request."""
    import httpx

    tally = Tally(("chat_rerank", "after_burst"))
    rng = np.random.default_rng(99)
    limits = httpx.Limits(max_connections=args.burst + 4, max_keepalive_connections=args.burst + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        t0 = time.perf_counter()
        bodies = [request_body("chat_rerank", n, 0, hidden, rng, args) for n in range(args.burst)]
        await asyncio.gather(*(_send(client, tally, "chat_rerank", r, b) for r, b in bodies))
        wall = time.perf_counter() - t0
        route, body = request_body("chat_rerank", 0, 1, hidden, rng, args)
        await _send(client, tally, "after_burst", route, body)
    out = tally.summary(wall)
    out["concurrent"] = args.burst
    out["retry_after_values"] = sorted({v for v in tally.retry_after if v is not None}, key=int)
    out["n_429_without_retry_after"] = sum(v is None for v in tally.retry_after)
    out["max_refusal_ms"] = round(max(tally.refusal_s) * 1000, 1) if tally.refusal_s else None
    out["answered_after_burst"] = tally.codes["after_burst"].get("200", 0) == 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storage", help="storage root with a published checkpoint (default: build a tiny one)")
    ap.add_argument("--llm-tag", default="tiny")
    ap.add_argument("--llm-source", help="student folder/source override (set automatically for the tiny store)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60, help="seconds the clients keep sending")
    ap.add_argument("--mix", default="score_latents,score_text,chat_rerank", help=f"kinds in turn, of {KINDS}")
    ap.add_argument("--chains-per-score", type=int, default=4, help="chains per /score request on latents")
    ap.add_argument("--k", type=int, default=4, help="candidates in RERANK chats")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--timeout", type=float, default=120, help="client timeout per request (a hang shows as one)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the server")
    ap.add_argument("--max-queue-generation", type=int, default=16, help="the server's generation queue bound")
    ap.add_argument("--burst", type=int, default=48, help="concurrent RERANK chats after the run (0 = no burst)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "service_load.json"))
    args = ap.parse_args()
    bad = set(args.mix.split(",")) - set(KINDS)
    if bad:
        sys.exit(f"--mix: unknown kinds {sorted(bad)}; use {', '.join(KINDS)}")

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
        "RJEPA_MAX_QUEUE_GENERATION": str(args.max_queue_generation),
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
        warm = argparse.Namespace(**{**vars(args), "clients": 1, "duration": 0.01})
        asyncio.run(run_load(url, hidden, warm, server.pid))  # first calls allocate: not in the RSS start figure
        result = asyncio.run(run_load(url, hidden, args, server.pid))
        burst = asyncio.run(run_burst(url, hidden, args)) if args.burst else None
        alive = httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()

    rss = result["rss_mb"]
    report = {
        "benchmark": "service_load",
        "command": "python bench/load_service.py " + " ".join(sys.argv[1:]),
        "server": "uvicorn, 1 process, 127.0.0.1; student calls serialised on one thread, latent scoring on another; "
        f"generation queue bound {args.max_queue_generation} (429 + Retry-After past it)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": args.threads},
        "checkpoint_id": health["checkpoint_id"],
        "llm_tag": health["llm_tag"],
        "hidden_size": hidden,
        "clients": args.clients,
        "duration_s": args.duration,
        "mix": args.mix.split(","),
        "chains_per_score": args.chains_per_score,
        "chat": {"k_rerank": args.k, "max_new_tokens": args.max_new_tokens},
        "n_requests": result["n_requests"],
        "n_ok": result["n_ok"],
        "n_5xx": result["n_5xx"],
        "n_429": result["n_429"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "rss_start_mb": rss["start"],
        "rss_end_mb": rss["end"],
        "results": result,
        "burst": burst,
        "targets": {
            "0 x 5xx under load": result["n_5xx"] == 0 and (burst is None or burst["n_5xx"] == 0),
            "every request answered (no timeouts or dropped connections)": result["n_other_errors"] == 0,
            "429 with Retry-After past the queue bound": burst is not None
            and burst["n_429"] > 0
            and burst["n_429_without_retry_after"] == 0,
            "answers after the burst": burst is not None and burst["answered_after_burst"] and alive,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("results", "burst")}, indent=2))
    print(json.dumps({"burst": burst}, indent=2))
    if not all(report["targets"].values()):
        sys.exit(f"targets missed: {[k for k, v in report['targets'].items() if not v]}")


if __name__ == "__main__":
    main()

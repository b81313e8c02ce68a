"""Train one partition's R-JEPA on N processes: the `torchrun` entry point and its launcher (SPEC F19).

    $ torchrun --standalone --nproc-per-node 2 -m rjepa_core.jepa.ddp \\
          --store .rjepa/store --llm smollm2-135m --version v1 --config configs/rjepa/default.yaml --out /tmp/run
    $ rjepa train --llm smollm2-135m --version v1 --nproc 2          # the same, launched for you

    >>> result = launch_training(2, store=".rjepa/store", llm_tag="smollm2-135m", version="v1",
    ...                          config="configs/rjepa/default.yaml", out_dir="/tmp/run", log=print)
    >>> result.steps, result.checkpoint_dir

Every rank reads the partition's latents from the store and splits them as the in-process pipeline
does (`split_for_training`), then calls the unchanged `train(...)`, which finds the process group in
the environment. Rank 0 prints the log lines the pipeline would log (the launcher streams them to its
`log`, e.g. Dagster's) and writes `train_result.json` beside the checkpoints; the launcher returns it
as a `TrainResult`. Resume: run the same command on the same `--out` again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT = "train_result.json"


def format_row(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def row_logger(log: Callable[[str], None] | None, val_every: int) -> Callable[[dict[str, Any]], None]:
    """The trainer's `log` callback as the pipeline uses it: every evaluation and every val_every-th step."""
    every = max(1, val_every)

    def on_row(row: dict[str, Any]) -> None:
        if log and (row.get("kind") == "val" or row.get("step", 0) % every == 0):
            log(format_row(row))

    return on_row


def result_to_dict(result: Any) -> dict[str, Any]:
    d = dataclasses.asdict(result)
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def result_from_dict(d: dict[str, Any]):
    from rjepa_core.jepa.trainer import TrainResult

    return TrainResult(**{**d, "checkpoint_dir": Path(d["checkpoint_dir"]), "last_dir": Path(d["last_dir"])})


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m rjepa_core.jepa.ddp", description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="storage root holding latents/<llm>/<version>/")
    ap.add_argument("--llm", required=True, help="llm_tag of the latents")
    ap.add_argument("--version", required=True, help="dataset version of the latents")
    ap.add_argument("--config", required=True, help="R-JEPA YAML/JSON (hidden_size is taken from the latents)")
    ap.add_argument("--out", required=True, help="run folder: best/, last/ and train_result.json")
    ap.add_argument("--max-steps", type=int, default=0, help=">0 overrides optim.total_steps")
    ap.add_argument("--device", default="auto", help="auto = one CUDA device per rank, else CPU (gloo)")
    ap.add_argument("--fresh", action="store_true", help="ignore a resumable state in --out/last")
    ap.add_argument("--init-from", default=None, help="checkpoint folder to warm-start from (same model config)")
    return ap


def main(argv: list[str] | None = None) -> None:
    """Body of every rank (also runs as one process without torchrun)."""
    args = _parser().parse_args(argv)
    from rjepa_core.io import atomic_write_json
    from rjepa_core.jepa.distributed import DistContext
    from rjepa_core.jepa.trainer import train
    from rjepa_core.pipeline import load_rjepa_config, split_for_training
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store.layout import StorageLayout

    if args.max_steps < 0:
        raise SystemExit(f"--max-steps must be >= 0, got {args.max_steps}")
    ctx = DistContext.from_env()
    seqs = LatentStore(StorageLayout(args.store)).read(args.llm, args.version)
    if not seqs:
        raise SystemExit(f"no latents for {args.llm}/{args.version} under {args.store}: materialize `latents` first")
    overrides = {"optim": {"total_steps": args.max_steps}} if args.max_steps else {}
    cfg = load_rjepa_config(args.config, seqs[0].hidden_size, **overrides)
    if cfg.train.labels != "validator":  # the votes need the sampled chains' answers
        from rjepa_core.jepa.labels import training_labels
        from rjepa_core.schemas import ChainOfThought, read_records

        chains = read_records(ChainOfThought, StorageLayout(args.store).student_chains_path(args.llm, args.version))
        seqs = training_labels(seqs, cfg.train.labels, chains)
    train_seqs, val_seqs, negatives = split_for_training(seqs, cfg.train.distinct_chains)
    on_row = row_logger(lambda line: print(line, flush=True), cfg.train.val_every)
    result = train(
        cfg,
        train_seqs,
        val_seqs,
        args.out,
        resume=not args.fresh,
        log=on_row,
        negatives=negatives,
        device=args.device,
        init_from=args.init_from,
    )
    if ctx.is_main:
        atomic_write_json(Path(args.out) / RESULT, result_to_dict(result))
        done = f"{result.steps} steps on {ctx.world_size} process(es) in {result.duration_s:.1f}s"
        print(f"[rjepa.ddp] {done}", flush=True)


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs `main(argv)` on nproc local processes (torchrun from this interpreter)."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*launch, "-m", "rjepa_core.jepa.ddp", *argv]


def launch_training(
    nproc: int,
    *,
    store: str | Path,
    llm_tag: str,
    version: str,
    config: str | Path,
    out_dir: str | Path,
    max_steps: int = 0,
    device: str = "auto",
    init_from: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
):
    """Run the trainer under torchrun on nproc processes, streaming its output to `log`; the TrainResult."""
    argv = ["--store", str(store), "--llm", llm_tag, "--version", version, "--config", str(config)]
    argv += ["--out", str(out_dir), "--max-steps", str(max_steps), "--device", device]
    if init_from is not None:
        argv += ["--init-from", str(init_from)]
    cmd = torchrun_command(nproc, argv)
    if log:
        log("[rjepa.ddp] " + " ".join(cmd))
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail.append(line)
        if log and line:
            log(line)
    rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"distributed training exited with code {rc}; last output:\n" + "\n".join(tail))
    path = Path(out_dir) / RESULT
    if not path.exists():
        raise RuntimeError(f"torchrun exited 0 but wrote no {path}; last output:\n" + "\n".join(tail))
    return result_from_dict(json.loads(path.read_text()))


if __name__ == "__main__":
    main()

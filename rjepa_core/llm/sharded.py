"""Latent extraction by shard (SPEC F19): N processes extract disjoint shard ranges of one partition.

    $ python -m rjepa_core.llm.sharded --store .rjepa/store --llm smollm2-135m --version v1 \\
          --spec spec.json --folder STAGING --shards 0:4 --shard-size 1024      # one worker, shards 0..3

    >>> staging = start_staging(layout, "smollm2-135m", "v1")
    >>> run_workers(2, layout=layout, spec=student.spec, version="v1", folder=staging, shard_size=1024, log=print)
    >>> LatentStore(layout).commit_staged("smollm2-135m", "v1", staging, expected=plan_shards(n, 1024))

Orchestration only (which chains go to which shard, who writes what); the extraction itself is
`rjepa_core.pipeline.extract_latents`, unchanged. The partition's chains are listed in one fixed order
(gold chains, then the student's, as the `latents` asset reads them); shard k holds chains
[k·S, (k+1)·S) — the same shards a one-process write of the whole list makes. Extraction runs in
chunks of `extraction_chunk(S)` chains that never straddle a shard boundary, so a shard's chains are
batched exactly as in one process whichever worker extracts it. Each worker commits each of its
shards atomically (`write_shard`: tensor file, then the parquet marker) into a hidden staging folder
beside the set; once every planned shard is there, one swap makes the new set visible
(`LatentStore.commit_staged`), so readers see the old set or the whole new one, never a mix.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

CHUNK = 64  # chains per extraction call in one process (`extract_latents`' default)


def extraction_chunk(shard_size: int) -> int:
    """Chains per extraction call so that no call mixes two shards: 64, or the shard size below 64."""
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    if shard_size < CHUNK:
        return shard_size
    if shard_size % CHUNK:
        raise ValueError(
            f"shard_size {shard_size} is neither below {CHUNK} nor a multiple of it: extraction batches would "
            f"straddle shards and parallel shards would not reproduce one process; use e.g. {CHUNK * 16}"
        )
    return CHUNK


def plan_shards(num_chains: int, shard_size: int) -> list[range]:
    """Chain index ranges of the shards: shard k = [k * shard_size, (k + 1) * shard_size)."""
    extraction_chunk(shard_size)
    return [range(s, min(s + shard_size, num_chains)) for s in range(0, num_chains, shard_size)]


def split_shards(num_shards: int, workers: int) -> list[range]:
    """Contiguous, disjoint shard ranges, one per worker (no empty range; fewer ranges than workers if needed)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    workers = min(workers, max(num_shards, 1))
    per, extra = divmod(num_shards, workers)
    out, start = [], 0
    for w in range(workers):
        stop = start + per + (w < extra)
        out.append(range(start, stop))
        start = stop
    return [r for r in out if len(r)]


def parse_range(text: str) -> range:
    """'2:5' -> range(2, 5) (shards 2, 3, 4)."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"shard range {text!r}: write START:STOP, e.g. 0:4 for shards 0..3") from None
    if not 0 <= a < b:
        raise ValueError(f"shard range {text!r}: need 0 <= START < STOP")
    return range(a, b)


def partition_inputs(layout, llm_tag: str, version: str):
    """(problems, chains) of a partition in the order the `latents` asset extracts them (gold, then student)."""
    from rjepa_core.schemas import ChainOfThought, Problem, read_records

    problems = read_records(Problem, layout.problems_path(version))
    cots = read_records(ChainOfThought, layout.cots_path(version))
    cots += read_records(ChainOfThought, layout.student_chains_path(llm_tag, version))
    return problems, cots


def extract_shards(
    student, problems, cots, shards: range, shard_size: int, folder: Path, log=None, captured=None
) -> list[Path]:
    """Extract and commit the shards `shards` of `cots` into `folder`; returns their parquet paths.

    Shards already whole in `folder` (an interrupted run's, see `rjepa_core.llm.resume`) are kept as they are.
    captured: {cot_id: latents captured while sampling} committed as they are (`rjepa_core.captured`).
    """
    from rjepa_core.llm.resume import staged_shards
    from rjepa_core.pipeline import extract_latents
    from rjepa_core.store.shards import shard_name, write_shard

    plan = plan_shards(len(cots), shard_size)
    if shards.stop > len(plan):
        raise ValueError(f"shards {shards.start}:{shards.stop} but the partition has {len(plan)} shard(s)")
    chunk = extraction_chunk(shard_size)
    whole = set(staged_shards(Path(folder), plan))  # committed by an earlier, interrupted run: kept
    written = []
    for k in shards:
        if k in whole:
            written.append(Path(folder) / f"{shard_name(k)}.parquet")
            if log:
                log(f"[rjepa.sharded] shard {k}: kept (already committed and intact)")
            continue
        part = [cots[i] for i in plan[k]]
        seqs = extract_latents(student, problems, part, chunk=chunk, captured=captured, log=log)
        written.append(write_shard(Path(folder), k, seqs))
        if log:
            log(f"[rjepa.sharded] shard {k}: {len(seqs)} sequences committed")
    return written


def start_staging(layout, llm_tag: str, version: str) -> Path:
    """A fresh hidden folder beside the set for workers to commit shards into (readers never look there)."""
    final = layout.latents_dir(llm_tag, version)
    folder = final.parent / f".{final.name}.shards-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    return folder


def discard_staging(layout, folder: Path) -> None:
    """Remove a staging folder once its shards were committed (or the commit was refused): here, and for
    object storage in the bucket too (extraction steps on other machines published their shards there)."""
    shutil.rmtree(folder, ignore_errors=True)
    if getattr(layout, "remote", None) is not None:
        layout.remote.discard(Path(folder).resolve().relative_to(layout.root))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m rjepa_core.llm.sharded", description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="storage root (datasets/, latents/)")
    ap.add_argument("--version", required=True)
    ap.add_argument("--spec", required=True, help="JSON of the student's LLMSpec (its llm_tag names the partition)")
    ap.add_argument("--folder", required=True, help="staging folder the shards are committed into")
    ap.add_argument("--shards", required=True, help="START:STOP shard indices this worker extracts")
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument(
        "--teacher-forced", action="store_true", help="ignore the student chains' latents captured while sampling"
    )
    return ap


def main(argv: list[str] | None = None) -> None:
    """One worker: load the student, extract its shard range, commit each shard."""
    args = _parser().parse_args(argv)
    import torch

    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec
    from rjepa_core.store.layout import StorageLayout

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = LLMSpec(**json.loads(Path(args.spec).read_text()))
    shards = parse_range(args.shards)
    layout = StorageLayout(args.store)
    problems, cots = partition_inputs(layout, spec.llm_tag, args.version)
    student = StudentLLM.load(spec, device=args.device)
    say = lambda m: print(m, flush=True)  # noqa: E731
    captured = None if args.teacher_forced else captured_for(layout, spec, args.version, cots, problems)
    extract_shards(student, problems, cots, shards, args.shard_size, Path(args.folder), log=say, captured=captured)


def captured_for(layout, spec, version: str, cots, problems=None) -> dict:
    """`reusable_latents` without the count."""
    return reusable_latents(layout, spec, version, cots, problems)[0]


def reusable_latents(layout, spec, version: str, cots, problems=None) -> tuple[dict, int]:
    """({cot_id: sequence} the partition may commit without a forward, how many of them are its parent's): the
    parent's committed latents of the same chains (`rjepa_core.llm.inherit.inheritable_latents`, given
    `problems`) and, over them, its staged latents captured while sampling (none when the registry entry asks
    for teacher-forced extraction of everything)."""
    from rjepa_core.captured import settings_of, usable_captured
    from rjepa_core.llm.inherit import inheritable_latents

    own = usable_captured(layout, spec.llm_tag, version, cots, settings_of(spec)) if spec.latents_from_sampling else {}
    parent = inheritable_latents(layout, spec, version, problems, cots) if problems is not None else {}
    parent = {k: s for k, s in parent.items() if k not in own}
    return {**parent, **own}, len(parent)


def _pump(name: str, stream, out: queue.Queue) -> None:
    for line in stream:
        out.put((name, line.rstrip()))
    out.put((name, None))


def run_workers(
    workers: int,
    *,
    layout,
    spec,
    version: str,
    folder: Path,
    shard_size: int = 1024,
    device: str = "auto",
    threads: int = 0,
    log: Callable[[str], None] | None = None,
    teacher_forced: bool = False,
) -> list[range]:
    """Extract every shard of the partition with `workers` processes side by side; the shard ranges run.

    Their output reaches `log` line by line (prefixed with the worker's range); any failing worker fails
    the whole call, after all of them have ended, with its last lines in the error.
    """
    problems, cots = partition_inputs(layout, spec.llm_tag, version)
    del problems
    ranges = split_shards(len(plan_shards(len(cots), shard_size)), workers)
    threads = threads or max(1, (os.cpu_count() or 1) // max(len(ranges), 1))
    spec_path = Path(folder).with_name(Path(folder).name + ".spec.json")  # beside the staging folder, not in it
    spec_path.write_text(json.dumps(spec.to_dict()))
    lines: queue.Queue = queue.Queue()
    procs, tails = {}, {}
    for r in ranges:
        name = f"shards {r.start}:{r.stop}"
        cmd = [sys.executable, "-m", "rjepa_core.llm.sharded", "--store", str(layout.root), "--version", version]
        cmd += ["--spec", str(spec_path), "--folder", str(folder), "--shards", f"{r.start}:{r.stop}"]
        cmd += ["--shard-size", str(shard_size), "--device", device, "--threads", str(threads)]
        cmd += ["--teacher-forced"] if teacher_forced else []
        if log:
            log(f"[rjepa.sharded] {name}: " + " ".join(cmd))
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs[name], tails[name] = p, deque(maxlen=30)
        threading.Thread(target=_pump, args=(name, p.stdout, lines), daemon=True).start()
    open_streams = len(procs)
    while open_streams:
        name, line = lines.get()
        if line is None:
            open_streams -= 1
            continue
        tails[name].append(line)
        if log and line:
            log(f"[{name}] {line}")
    failed = {name: p.wait() for name, p in procs.items()}
    failed = {name: rc for name, rc in failed.items() if rc != 0}
    spec_path.unlink(missing_ok=True)
    if failed:
        detail = "\n".join(f"--- {n} exited {rc}:\n" + "\n".join(tails[n]) for n, rc in failed.items())
        raise RuntimeError(f"{len(failed)} of {len(procs)} extraction worker(s) failed:\n{detail}")
    return ranges


if __name__ == "__main__":
    main()

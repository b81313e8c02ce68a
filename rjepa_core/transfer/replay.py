"""The multi-LLM replay comparison (SPEC F13): each student under three ways of getting an R-JEPA for it.

    >>> report = replay(layout, ["smollm2-135m", "gemma3-270m"], "v1", reference="smollm2-135m")
    >>> write_replay(report, "bench/results/replay.json")
    >>> report["students"]["gemma3-270m"]["conditions"]["adapter"]["k=8"]["jepa"]["accuracy"]

For every student with latents and chains on the dataset version, on its test split (`eval.evaluation`,
the same selection methods, bootstrap intervals and AUROC as `eval_report`):

- own: its own LATEST checkpoint (trained on its latents); minutes = that training run's wall time;
- adapter: the reference llm's LATEST checkpoint read through the student's latent adapter (published by
  `calibration_adapter`, fitted here when there is none); minutes = the adapter fit;
- warm_start: a checkpoint of the student's width folded from the reference body and the adapter, then
  fine-tuned at a low learning rate for `transfer_steps`; beside it `scratch`, the same model and budget
  from a fresh init. Both learning curves (validation loss per evaluation) are recorded.

An encoder (MiniLM) writes no chains: `chains_of={"minilm-l6": "smollm2-135m"}` evaluates it on the
chains of another student, whose cot_ids its latents carry; `encode_latents` teacher-forces those chains
(and the gold ones) through it once and stores the set as latents/<encoder>/<version>/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rjepa_core.eval.evaluation import evaluate
from rjepa_core.io import atomic_write_json
from rjepa_core.jepa.calibration import Calibration
from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.jepa.scoring import JEPAScorer
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import read_latest_checkpoint
from rjepa_core.transfer.adapter import AdaptedRJEPA
from rjepa_core.transfer.fitting import AdapterFitConfig
from rjepa_core.transfer.jobs import fit_and_publish_adapter
from rjepa_core.transfer.store import load_adapter, read_latest_adapter
from rjepa_core.transfer.warmstart import curve, fold_adapter, train_scratch, train_transfer

Log = Callable[[str], None] | None
METHODS = ("greedy", "majority", "jepa")  # OFF, majority vote, JEPA rerank


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 3)


def _train_minutes(checkpoint_dir: Path) -> float | None:
    """Wall time of the training run that wrote `checkpoint_dir` (its run.json), in minutes."""
    try:
        rec = json.loads((Path(checkpoint_dir).parent / "run.json").read_text())
        return _minutes(float(rec["finished_at"]) - float(rec["started_at"]))
    except (OSError, KeyError, ValueError):
        return None


class _Partition:
    """One student's evaluation inputs on a dataset version: problems, candidate chains, latents."""

    def __init__(self, layout: StorageLayout, llm: str, version: str, chains_of: str):
        self.llm, self.version = llm, version
        self.seqs = LatentStore(layout).read(llm, version)
        problems = read_records(Problem, layout.problems_path(version))
        path = layout.student_chains_path(chains_of, version)
        chains = read_records(ChainOfThought, path) if path.exists() else []
        split = {p.problem_id: p.split for p in problems}
        self.H = {s.cot_id: s.H for s in self.seqs}
        self.Q = {s.cot_id: s.Q for s in self.seqs if s.Q is not None}
        sampled = [c for c in chains if not c.meta.get("greedy") and c.cot_id in self.H]
        self.test_problems = [p for p in problems if p.split == "test"]
        self.test_chains = [c for c in sampled if split.get(c.problem_id) == "test"]
        self.train_chains = [c for c in sampled if split.get(c.problem_id) in ("train", "val")]
        self.greedy = {c.problem_id: c for c in chains if c.meta.get("greedy")}
        self.missing: str | None = None  # why this student cannot be evaluated
        if not self.seqs:
            self.missing = f"no latents for {llm}/{version}: materialize `latents` for it"
        elif not self.test_chains:
            self.missing = (
                f"no sampled test chains of {chains_of}/{version} with {llm} latents: materialize "
                f"`student_chains` (and `latents`) for {chains_of}"
            )

    def usable_ks(self, ks: Sequence[int]) -> list[int]:
        """The ks every test problem has candidates for (a student sampled with a smaller k_test has fewer)."""
        counts: dict[str, int] = {}
        for c in self.test_chains:
            counts[c.problem_id] = counts.get(c.problem_id, 0) + 1
        fewest = min(counts.values()) if counts else 0
        return [k for k in ks if k <= fewest] or [fewest]

    def evaluate(self, scorer: Any, ks: Sequence[int], bootstrap: int, seed: int) -> dict[str, Any]:
        tic = time.perf_counter()
        ks = self.usable_ks(ks)
        rep = evaluate(
            self.test_problems,
            self.test_chains,
            self.H,
            scorer,
            train_chains=self.train_chains,
            train_latents=self.H,
            ks=tuple(ks),
            seed=seed,
            llm_tag=self.llm,
            dataset_version=self.version,
            greedy=self.greedy or None,
            n_resamples=bootstrap,
            questions=self.Q,
        )
        out: dict[str, Any] = {"n_problems": rep["n_problems"], "auroc_jepa": rep["auroc_jepa"], "ks": rep["ks"]}
        out["auroc_jepa_within_problem"] = rep["auroc_jepa_within_problem"]
        for k in rep["ks"]:
            key = f"k={k}"
            out[key] = {m: {f: rep["methods"][m][key][f] for f in ("accuracy", "ci95")} for m in METHODS}
            out[key]["jepa_minus_majority"] = rep["rerank_minus_majority"].get(key)
            out[key]["jepa_minus_majority_ci95"] = rep["rerank_minus_majority_ci95"].get(key)
        out["eval_minutes"] = _minutes(time.perf_counter() - tic)
        return out


def encode_latents(layout: StorageLayout, student: Any, version: str, chains_of: str, log: Log = None):
    """Latents of the version's gold chains and of `chains_of`'s sampled chains through `student` (an encoder
    such as MiniLM, or any student), written as the latent set of its llm_tag; returns the sequences."""
    llm_tag = student.llm_tag
    from rjepa_core.pipeline import extract_latents

    problems = read_records(Problem, layout.problems_path(version))
    cots = read_records(ChainOfThought, layout.cots_path(version))
    path = layout.student_chains_path(chains_of, version)
    if not path.exists():
        raise FileNotFoundError(f"no sampled chains of {chains_of}/{version}: materialize `student_chains` for it")
    cots += read_records(ChainOfThought, path)
    tic = time.perf_counter()
    seqs = extract_latents(student, problems, cots, log=log)
    LatentStore(layout).write(llm_tag, version, seqs)
    if log:
        log(f"{llm_tag}: {len(seqs)} chains of {chains_of}/{version} encoded in {time.perf_counter() - tic:.0f} s")
    return seqs


def _adapter(layout, llm, version, reference, fit_cfg, refit, ensure, device, log) -> tuple[Any, float]:
    """(LoadedAdapter, fit minutes): the published one, else one fitted now (through `ensure` when given)."""
    pointer = None if refit else read_latest_adapter(layout, reference, llm)
    if pointer is None:
        tic = time.perf_counter()
        if ensure is not None:
            ensure(llm)  # e.g. a Dagster materialization of `calibration_adapter`
        else:
            run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-replay"
            fit_and_publish_adapter(
                layout, llm, version, reference=reference, run_id=run_id, cfg=fit_cfg, device=device, log=log
            )
        if log:
            log(f"{llm}: adapter fitted in {time.perf_counter() - tic:.0f} s")
        pointer = read_latest_adapter(layout, reference, llm)
        if pointer is None:
            raise FileNotFoundError(f"no adapter {reference} -> {llm} was published: see the fit's log")
    loaded = load_adapter(pointer["path"])
    return loaded, _minutes(float(loaded.meta.get("fit_seconds") or 0.0))


def replay(
    layout: StorageLayout,
    llms: Sequence[str],
    version: str,
    *,
    reference: str = "smollm2-135m",
    chains_of: dict[str, str] | None = None,
    ks: Sequence[int] = (4, 8),
    bootstrap: int = 1000,
    seed: int = 0,
    transfer_steps: int = 300,
    transfer_lr: float = 1e-4,
    val_every: int = 25,
    fit_cfg: AdapterFitConfig | None = None,
    refit: bool = False,
    ensure_adapter: Callable[[str], Any] | None = None,
    device: str = "cpu",
    log: Log = None,
) -> dict[str, Any]:
    """The comparison report (see the module doc); nothing here publishes a checkpoint or moves a LATEST."""
    chains_of = chains_of or {}
    ref_pointer = read_latest_checkpoint(layout, reference)
    ref_ck = load_checkpoint(ref_pointer["path"], device=device) if ref_pointer else None
    students: dict[str, Any] = {}
    for llm in llms:
        part = _Partition(layout, llm, version, chains_of.get(llm, llm))
        entry: dict[str, Any] = {"chains_of": chains_of.get(llm, llm), "conditions": {}}
        students[llm] = entry
        if part.missing:
            entry["missing"] = part.missing
            continue
        entry["hidden_size"] = int(part.seqs[0].H.shape[1])
        entry["num_sequences"] = len(part.seqs)
        cond = entry["conditions"]
        own = read_latest_checkpoint(layout, llm)
        if own is None:
            cond["own"] = {"missing": f"no checkpoint of {llm}: materialize `jepa_checkpoint` for it"}
        else:
            ck = load_checkpoint(own["path"], device=device)
            cond["own"] = {"checkpoint": own["run_id"], "minutes": _train_minutes(ck.path)}
            cond["own"].update(part.evaluate(JEPAScorer.from_checkpoint(ck, device=device), ks, bootstrap, seed))
        if llm == reference:
            cond["adapter"] = cond["warm_start"] = {"missing": "the reference itself: its own checkpoint applies"}
            continue
        if ref_ck is None:
            cond["adapter"] = cond["warm_start"] = {
                "missing": f"the reference {reference} has no checkpoint: materialize `jepa_checkpoint` for it"
            }
            continue
        if log:
            log(f"{llm}: adapter into {reference} {ref_pointer['run_id']}")
        loaded, fit_min = _adapter(layout, llm, version, reference, fit_cfg, refit, ensure_adapter, device, log)
        # the checkpoint the adapter was fitted into (the reference's LATEST may have moved since)
        fitted_into = layout.resolve(loaded.meta["reference_checkpoint_path"])
        ck = ref_ck if Path(fitted_into) == Path(ref_ck.path) else load_checkpoint(fitted_into, device=device)
        cal = loaded.meta.get("calibration")
        model = AdaptedRJEPA(ck.model, loaded.adapter.to(device))
        scorer = JEPAScorer(model, ck.config.score, device, Calibration.from_dict(cal) if cal else None,
                            ck.config.loss.kind)  # fmt: skip
        ratios = {k: v["ratio"] for k, v in (loaded.meta.get("held_out") or {}).items()}
        cond["adapter"] = {
            "adapter": loaded.path.name,
            "reference_checkpoint": loaded.meta.get("reference_checkpoint"),
            "method": loaded.meta.get("method"),
            "minutes": fit_min,
            "held_out_ratio": ratios,
        }
        cond["adapter"].update(part.evaluate(scorer, ks, bootstrap, seed))
        cond["warm_start"], cond["scratch"] = _transfer(
            layout, part, ck, loaded.adapter, transfer_steps, transfer_lr, val_every, device, ks, bootstrap, seed,
            log,
        )  # fmt: skip
        cond["warm_start"]["minutes"] = round(fit_min + cond["warm_start"]["train_minutes"], 3)
    return {
        "dataset_version": version,
        "reference_llm": reference,
        "reference_checkpoint": ref_pointer["run_id"] if ref_pointer else None,
        "created_at": datetime.now(UTC).isoformat(),
        "ks": list(ks),
        "transfer": {"steps": transfer_steps, "lr": transfer_lr, "val_every": val_every},
        "students": students,
        "notes": [
            "accuracy per problem on the test split, ci95 a percentile bootstrap over problems; greedy = OFF",
            "auroc_jepa: -JEPA-loss against chain correctness over every candidate of the K pool",
            "minutes: own = its training run; adapter = the adapter fit; warm_start = adapter fit + fine-tune; "
            "scratch = its training (same steps as the fine-tune); eval_minutes = scoring + selection",
        ],
    }


def _transfer(layout, part, ref_ck, adapter, steps, lr, val_every, device, ks, bootstrap, seed, log):
    """(warm_start, scratch): the folded reference fine-tuned on the student's latents, and the same budget
    from a fresh init, each evaluated; checkpoints under reports/<llm>/<version>/replay/ (never published)."""
    root = Path(layout.reports_dir(part.llm, part.version)) / "replay"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    train = [s for s in part.seqs if s.split == "train"]
    out: list[dict[str, Any]] = []
    for kind in ("warm_start", "scratch"):
        tic = time.perf_counter()
        folder = root / f"{kind}-{stamp}"
        if kind == "warm_start":
            init = fold_adapter(ref_ck, adapter, train, folder / "init", seed=seed)
            run = train_transfer(ref_ck, init, part.seqs, folder, steps=steps, lr=lr, val_every=val_every,
                                 device=device)  # fmt: skip
        else:
            run = train_scratch(ref_ck, part.seqs, folder, steps=steps, val_every=val_every, device=device)
        minutes = _minutes(time.perf_counter() - tic)
        if log:
            log(f"{part.llm}: {kind} trained {run.result.steps} steps in {minutes:.2f} min")
        ck = load_checkpoint(run.result.checkpoint_dir, device=device)
        row = {"checkpoint": str(run.result.checkpoint_dir), "train_minutes": minutes, "steps": run.result.steps,
               "best_val_loss": run.result.best_val_loss, "learning_curve": curve(run.result)}  # fmt: skip
        row.update(part.evaluate(JEPAScorer.from_checkpoint(ck, device=device), ks, bootstrap, seed))
        row["minutes"] = minutes
        out.append(row)
    return out[0], out[1]


def write_replay(report: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_json(path, report)


def markdown_table(report: dict[str, Any]) -> str:
    """The README table: one row per student × condition at the largest K its candidates allow."""
    lines = [
        f"Dataset {report['dataset_version']}, test split, accuracy [95 % CI] at K candidates; reference "
        f"{report['reference_llm']} checkpoint {report['reference_checkpoint']}.",
        "",
        "| student | width | condition | K | OFF | majority | JEPA | JEPA-loss AUROC | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def acc(row: dict, k: str, m: str) -> str:
        a = row[k][m]
        return f"{a['accuracy']:.3f} [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}]"

    for llm, entry in report["students"].items():
        for name, row in entry.get("conditions", {}).items():
            if not row.get("ks"):
                continue
            k = f"k={max(row['ks'])}"
            auroc = row.get("auroc_jepa")
            lines.append(
                f"| {llm} | {entry.get('hidden_size', '')} | {name} | {k[2:]} | {acc(row, k, 'greedy')} "
                f"| {acc(row, k, 'majority')} | {acc(row, k, 'jepa')} | {'' if auroc is None else f'{auroc:.3f}'} "
                f"| {row.get('minutes')} |"
            )
    return "\n".join(lines)

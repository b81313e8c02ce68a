"""The pipeline's steps as plain functions; Dagster assets and the CLI are thin wrappers around them.

>>> student = StudentLLM.load("smollm2-135m")
>>> chains = sample_student_chains(student, problems, k=4, k_test=8)
>>> seqs = extract_latents(student, problems, gold_cots + chains)
>>> result = train_jepa(seqs, cfg, out_dir="checkpoints/run1")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rjepa_core.progress import Progress
from rjepa_core.schemas import ChainOfThought, LatentSequence, Problem, distinct_chains, stable_id
from rjepa_core.validators.gold import label_chain

Log = Callable[[str], None] | None


def sample_student_chains(student, problems: list[Problem], **kw) -> list[ChainOfThought]:
    """K sampled chains per problem (k_test on the test split, plus one greedy chain there), labelled.

    Keywords as `sample_student_chains_with_latents` (without `capture`).
    """
    return sample_student_chains_with_latents(student, problems, capture=None, **kw)[0]


def sample_student_chains_with_latents(
    student,
    problems: list[Problem],
    *,
    k: int = 4,
    k_test: int | None = 8,
    temperature: float = 0.7,
    max_new_tokens: int = 96,
    seed: int = 0,
    greedy_test: bool = True,
    batch_size: int | None = None,
    examples=None,
    capture=True,
    log: Log = None,
):
    """(chains, captured latent sequences, capture stats or None): the chains of `sample_student_chains` and,
    with `capture` (True or an `llm.capture.CaptureSpec`), their step latents recorded while sampling — the
    same layer, pooling and question latent `extract_latents` gives, over the tokens the student wrote.

    examples: the prompt's worked examples; by default the ones `problems` are marked with.
    """
    if k < 1 or (k_test is not None and k_test < 1):
        raise ValueError(f"k and k_test must be >= 1, got k={k}, k_test={k_test}")
    from rjepa_core.captured import captured_sequence
    from rjepa_core.llm.capture import CaptureStats, resolve_capture
    from rjepa_core.llm.prompting import examples_of

    tag = student.llm_tag
    spec = resolve_capture(student, capture)
    stats = CaptureStats() if spec is not None else None
    examples = examples_of(problems) if examples is None else list(examples)
    out: list[ChainOfThought] = []
    seqs: list[LatentSequence] = []
    groups: dict[tuple[int, float], list[Problem]] = {}
    for p in problems:
        if p.train_only:  # gold training data only (a train_only source): never sampled
            continue
        kk = k_test if (p.split == "test" and k_test) else k
        groups.setdefault((kk, temperature), []).append(p)
        if greedy_test and p.split == "test":
            groups.setdefault((1, 0.0), []).append(p)
    total = sum(kk * len(ps) for (kk, _), ps in groups.items())
    prog = Progress(total, f"sample chains ({tag})", log)
    for (kk, temp), ps in groups.items():
        rows = batch_size or student.spec.batch_size
        per_call = max(1, rows // kk)  # prompts per call so that one call fills one generation batch
        for start in range(0, len(ps), per_call):
            chunk = ps[start : start + per_call]
            prompts = [student.prompt_for(p.statement, examples) for p in chunk]
            gen = student.generate(
                prompts,
                k=kk,
                temperature=temp,
                max_new_tokens=max_new_tokens,
                seed=seed + start + 7919 * kk,
                batch_size=rows,
                capture=spec,
                capture_stats=stats,
            )
            for p, prompt, samples in zip(chunk, prompts, gen, strict=True):
                for i, g in enumerate(samples):
                    steps = g.steps or [g.text.strip() or "(empty)"]
                    kind = "greedy" if temp == 0.0 else "sample"
                    chain = ChainOfThought(
                        cot_id=stable_id(tag, p.problem_id, kind, str(i), str(seed)),
                        problem_id=p.problem_id,
                        steps=steps,
                        final_answer=g.final_answer or "",
                        is_valid=False,
                        origin=f"student:{tag}",
                        created_at=datetime.now(UTC),
                        logprob=float(g.logprob),
                        meta={
                            "sample_index": i,
                            "greedy": temp == 0.0,
                            "temperature": temp,
                            "num_new_tokens": g.num_new_tokens,
                            "text": g.text,
                            "split": p.split,
                            "few_shot": len(examples),
                            # what else decides the sample: a child version inherits it only when these match
                            # (rjepa_core.llm.inherit)
                            "max_new_tokens": max_new_tokens,
                            "seed": seed,
                            "prompt_sha": stable_id(prompt),
                        },
                    )
                    chain = label_chain(p, chain)
                    out.append(chain)
                    if g.latents is not None and len(g.latents.H) == len(steps):
                        seqs.append(captured_sequence(student, p, chain, g.latents, spec.layer_idx))
            prog.update(kk * len(chunk))
    prog.done()
    return out, seqs, stats


def extract_latents(
    student,
    problems: list[Problem],
    cots: list[ChainOfThought],
    *,
    layer_idx: int | None = None,
    pooling: str | None = None,
    question_pooling: str | None = None,
    chunk: int = 64,
    captured: dict[str, LatentSequence] | None = None,
    log: Log = None,
) -> list[LatentSequence]:
    """Step latents of every chain (gold and student), in the order of `cots`: teacher-forced, except the
    chains found in `captured` ({cot_id: sequence captured while sampling, `rjepa_core.captured`}), which
    are taken as they are (no second forward).

    layer_idx / pooling / question_pooling: the student layer, the step pooling and how the question latent
    is taken (default: the registry entry's); `captured` must have been recorded with the same.
    """
    captured = captured or {}
    if captured:
        reused = [c for c in cots if c.cot_id in captured]
        forced = [c for c in cots if c.cot_id not in captured]
        if log:
            log(f"{len(reused)} chains have latents captured while sampling; teacher-forcing {len(forced)}")
        kw = dict(layer_idx=layer_idx, pooling=pooling, question_pooling=question_pooling, chunk=chunk, log=log)
        done = {s.cot_id: s for s in extract_latents(student, problems, forced, **kw)} if forced else {}
        for c in reused:
            s = captured[c.cot_id]
            if s.problem_id != c.problem_id or s.num_steps != len(c.steps):
                raise ValueError(f"captured latents of {c.cot_id} do not belong to that chain: re-sample it")
            done[c.cot_id] = s
        return [done[c.cot_id] for c in cots]
    by_id = {p.problem_id: p for p in problems}
    missing = {c.problem_id for c in cots} - set(by_id)
    if missing:
        raise ValueError(
            f"{len(missing)} chains refer to problems not in this dataset version (e.g. {next(iter(missing))})"
        )
    from rjepa_core.llm.extraction import ChainInput
    from rjepa_core.llm.prompting import examples_of

    examples = examples_of(problems)  # the prompt the chains were sampled with
    layer = student.spec.layer_idx if layer_idx is None else layer_idx
    pooling = student.spec.pooling if pooling is None else pooling
    prog = Progress(len(cots), f"extract latents ({student.llm_tag}, layer {layer}, {pooling} pooling)", log)
    out: list[LatentSequence] = []
    prompts: dict[str, str] = {}
    for start in range(0, len(cots), chunk):
        part = cots[start : start + chunk]
        items = []
        for c in part:
            if c.problem_id not in prompts:
                prompts[c.problem_id] = student.prompt_for(by_id[c.problem_id].statement, examples)
            items.append(ChainInput(prompts[c.problem_id], c.steps, question=by_id[c.problem_id].statement.strip()))
        extracted = student.extract(items, layer_idx=layer, pooling=pooling, question_pooling=question_pooling)
        for c, ex in zip(part, extracted, strict=True):
            p = by_id[c.problem_id]
            out.append(
                LatentSequence(
                    cot_id=c.cot_id,
                    problem_id=c.problem_id,
                    llm_tag=student.llm_tag,
                    layer_idx=layer,
                    hidden_size=int(ex.H.shape[1]),
                    num_steps=int(ex.H.shape[0]),
                    step_spans=ex.step_spans,
                    token_ids=ex.token_ids,
                    domain=p.domain,
                    is_valid=c.is_valid,
                    split=p.split,
                    origin=c.origin,
                    H=ex.H,
                    Q=ex.q,
                ).check()
            )
        prog.update(len(part))
    prog.done()
    return out


def _config_dict(path, seen: tuple) -> dict:
    """A config file's sections; `extends: <file>` (beside it) starts from that file's sections, key by key."""
    import yaml

    if not path.exists():
        raise FileNotFoundError(f"R-JEPA config {path} does not exist (see configs/rjepa/*.yaml)")
    if path.resolve() in seen:
        raise ValueError(f"R-JEPA config {path} extends itself (via {' -> '.join(str(p) for p in seen)})")
    # JSON (what a run writes for its torchrun workers) is read as JSON: YAML 1.1 reads 1e-05 as a string
    d = (json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())) or {}
    parent = d.pop("extends", None)
    if parent is None:
        return d
    base = _config_dict(path.parent / str(parent), (*seen, path.resolve()))
    for section, values in d.items():
        base[section] = {**(base.get(section) or {}), **(values or {})} if isinstance(values, dict) else values
    return base


def load_rjepa_config(path, hidden_size: int, **section_overrides):
    """R-JEPA config from YAML with the student's hidden size filled in (YAML may leave it out).

    A file may start from another with `extends: default.yaml` and set only the keys it changes."""
    from pathlib import Path

    from rjepa_core.config import RJEPAConfig

    d = _config_dict(Path(path), ())
    d.setdefault("model", {})
    declared = d["model"].get("hidden_size")
    if declared is not None and declared != hidden_size:
        raise ValueError(
            f"{path}: model.hidden_size is {declared} but the latents have width {hidden_size}: "
            "remove hidden_size from the YAML (it is taken from the latents) or use matching latents"
        )
    d["model"]["hidden_size"] = hidden_size
    cfg = RJEPAConfig.from_dict(d)
    return cfg.replace(**section_overrides) if section_overrides else cfg


def split_for_training(seqs: list[LatentSequence], distinct: bool = False):
    """(train targets, val targets, hard negatives): valid chains are JEPA targets, invalid only negatives.

    distinct: repeats of one chain of a problem count once (`schemas.distinct_chains`; config
    `train.distinct_chains`).
    """
    if distinct:
        seqs = distinct_chains(seqs)
    train = [s for s in seqs if s.is_valid and s.split == "train"]
    val = [s for s in seqs if s.is_valid and s.split == "val"]
    negatives = [s for s in seqs if not s.is_valid and s.split == "train"]
    if not train:
        raise ValueError("no valid training chains: materialize gold_cots/student_chains with some valid chains first")
    if not val:  # tiny datasets: hold out a slice of train rather than fail
        cut = max(1, len(train) // 10)
        train, val = train[cut:], train[:cut]
    return train, val, negatives


def train_jepa(
    seqs: list[LatentSequence],
    cfg,
    out_dir,
    *,
    log: Log = None,
    device: str = "auto",
    init_from=None,
    nproc: int = 1,
    store_root=None,
    chains=None,
    **extra_meta,
):
    """Train R-JEPA on the valid train chains, calibrate on val chains; returns (TrainResult, meta).

    `chains`: the partition's ChainOfThought records, needed when `train.labels` is "majority" (the targets and
    negatives then come from the sampled chains' votes, not from the validator; `rjepa_core.jepa.labels`).

    `init_from`: a checkpoint folder to fine-tune from (warm start) instead of a fresh init.
    nproc > 1: train on nproc processes under torchrun (DDP); they read the same latents from
    `store_root` (llm_tag and dataset_version from extra_meta), and their output goes to `log`.
    """
    from rjepa_core.io import atomic_write_json
    from rjepa_core.jepa.calibration import fit_calibration
    from rjepa_core.jepa.checkpoint import load_checkpoint, update_meta
    from rjepa_core.jepa.ddp import launch_training, row_logger
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.jepa.trainer import train

    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1 (processes to train on), got {nproc!r}")
    from rjepa_core.jepa.labels import training_labels

    seqs = training_labels(seqs, cfg.train.labels, chains)
    train_seqs, val_seqs, negatives = split_for_training(seqs, cfg.train.distinct_chains)
    if nproc == 1:
        on_row = row_logger(log, cfg.train.val_every)
        result = train(
            cfg, train_seqs, val_seqs, out_dir, negatives=negatives, log=on_row, device=device, init_from=init_from
        )
    else:
        tag, version = extra_meta.get("llm_tag"), extra_meta.get("dataset_version")
        if store_root is None or not tag or not version:
            raise ValueError(
                "nproc > 1 trains in torchrun processes that read the latents themselves: "
                "pass store_root, llm_tag and dataset_version"
            )
        config_path = atomic_write_json(Path(out_dir) / "train_config.json", cfg.to_dict())
        result = launch_training(
            nproc,
            store=store_root,
            llm_tag=tag,
            version=version,
            config=config_path,
            out_dir=out_dir,
            device=device,
            init_from=init_from,
            log=log,
        )
    atomic_write_json(Path(out_dir) / "history.json", result.history)
    ck = load_checkpoint(result.checkpoint_dir)
    calibration = fit_calibration(JEPAScorer.from_checkpoint(ck), val_seqs)
    meta = update_meta(
        result.checkpoint_dir,
        calibration=calibration.to_dict(),
        num_train=len(train_seqs),
        num_val=len(val_seqs),
        num_negatives=len(negatives),
        labels=cfg.train.labels,
        warm_start_from=str(init_from) if init_from is not None else None,
        **extra_meta,
    )
    return result, meta


def tune_selection(layout, llm_tag: str, version: str, checkpoint_dir, seqs=None, *, device: str = "cpu") -> dict:
    """Fit the checkpoint's inference settings on the validation candidates and write them into its meta.

    The JEPA vote's tau_rel and the position-normalised surprise (see `eval.evaluation.fit_selection`), and
    NUDGE's surprise threshold per step position (`inference.nudge.fit_threshold` on valid validation
    chains): the service and the eval report then use the same values. Returns the meta entries written.
    """
    from rjepa_core.eval.evaluation import fit_selection
    from rjepa_core.jepa.checkpoint import load_checkpoint, update_meta
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.schemas import read_records
    from rjepa_core.store.latents import LatentStore

    problems = read_records(Problem, layout.problems_path(version))
    chains = read_records(ChainOfThought, layout.student_chains_path(llm_tag, version))
    seqs = LatentStore(layout).read(llm_tag, version) if seqs is None else seqs
    scorer = JEPAScorer.from_checkpoint(load_checkpoint(checkpoint_dir, device=device), device=device)
    entries = fit_selection(
        scorer,
        problems,
        chains,
        {s.cot_id: s.H for s in seqs},
        questions={s.cot_id: s.Q for s in seqs if s.Q is not None},
    )
    lawful = [s for s in seqs if s.is_valid and s.split == "val" and s.H is not None] or [
        s for s in seqs if s.is_valid and s.split == "train" and s.H is not None
    ]
    if lawful:
        from rjepa_core.inference.nudge import fit_threshold

        where = f"{len(lawful)} valid {lawful[0].split}-split chains"
        chains = [(s.H, s.Q, s.domain) for s in lawful]
        entries["nudge"] = fit_threshold(scorer, chains, NUDGE_QUANTILE, source=where).to_dict()
    if entries:
        update_meta(checkpoint_dir, **entries)
    return entries


NUDGE_QUANTILE = 0.9  # a step is "surprising" above the 90th percentile of lawful steps at its position


def newest_checkpoint(layout, llm_tag: str, version: str):
    """Best checkpoint folder of the newest finished training run of a partition (run ids sort by time)."""
    from pathlib import Path

    from rjepa_core.jepa.runs import is_unfinished

    root = Path(layout.checkpoints_dir(llm_tag, version))
    runs = [p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")] if root.exists() else []
    runs = sorted(p for p in runs if not is_unfinished(p))  # a killed run is resumed, not evaluated
    if not runs:
        raise FileNotFoundError(f"no checkpoint for {llm_tag}/{version}: materialize `jepa_checkpoint` first")
    return runs[-1] / "best"


def added_test_ids(layout, version: str, parent: str) -> set[str]:
    """Ids of `version`'s test problems that `parent` does not hold (a child's held-out additions)."""
    from rjepa_core.schemas import read_records

    for v in (version, parent):
        if not layout.problems_path(v).exists():
            raise FileNotFoundError(f"no problems for {v}: materialize it first (`rjepa demo --version {v}`)")
    old = {p.problem_id for p in read_records(Problem, layout.problems_path(parent))}
    return {p.problem_id for p in read_records(Problem, layout.problems_path(version)) if p.split == "test"} - old


def evaluation_inputs(layout, llm_tag: str, version: str, test_ids: set[str] | None = None) -> dict:
    """What `eval.evaluation.evaluate` reads of a partition besides the scorer: the test problems and their
    sampled candidates, every chain's latents and question latents, the train+val candidates (the verifier and
    probe train on them; composite weights are fitted on the val ones) and the greedy chains.

    test_ids: evaluate only these test problems (e.g. the ones a child version added to its parent's).
    """
    from rjepa_core.schemas import read_records
    from rjepa_core.store.latents import LatentStore

    problems = read_records(Problem, layout.problems_path(version))
    chains = read_records(ChainOfThought, layout.student_chains_path(llm_tag, version))
    seqs = LatentStore(layout).read(llm_tag, version)
    H = {s.cot_id: s.H for s in seqs}
    split = {p.problem_id: p.split for p in problems}
    tested = {i for i, s in split.items() if s == "test" and (test_ids is None or i in test_ids)}
    if not tested:
        raise ValueError(f"{llm_tag}/{version} has no test problems to evaluate (of {len(test_ids or ())} asked)")
    sampled = [c for c in chains if not c.meta.get("greedy")]
    return {
        "problems": [p for p in problems if p.problem_id in tested],
        "chains": [c for c in sampled if c.problem_id in tested],
        "latents": H,
        "train_chains": [c for c in sampled if split[c.problem_id] in ("train", "val")],
        "train_latents": H,
        "greedy": {c.problem_id: c for c in chains if c.meta.get("greedy")} or None,
        "questions": {s.cot_id: s.Q for s in seqs if s.Q is not None},
    }


def run_evaluation(
    layout,
    llm_tag: str,
    version: str,
    *,
    ks=(4, 8),
    seed: int = 0,
    bootstrap: int = 1000,
    device: str = "cpu",
    test_ids: set[str] | None = None,
    out_dir: str | Path | None = None,
    log: Log = None,
):
    """Evaluate the partition's newest checkpoint on its test split; write report.{json,md} + plots.

    test_ids: only these test problems; out_dir: write the report there instead of the partition's reports
    folder (a subset's report must not replace the partition's own).
    """
    import json

    from rjepa_core.eval.evaluation import evaluate
    from rjepa_core.eval.report import write_report
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer

    inputs = evaluation_inputs(layout, llm_tag, version, test_ids)
    best = newest_checkpoint(layout, llm_tag, version)
    ck = load_checkpoint(best, device=device)
    history_path = best.parent / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else None
    scorer = JEPAScorer.from_checkpoint(ck, device=device)
    vote = ck.meta.get("jepa_vote") or {}  # fitted on validation when the checkpoint was made
    if log:
        n_chains, n_problems = len(inputs["chains"]), len(inputs["problems"])
        log(f"evaluating {n_chains} candidates on {n_problems} test problems, K={list(ks)}")
    report = evaluate(
        scorer=scorer,
        ks=tuple(ks),
        seed=seed,
        llm_tag=llm_tag,
        dataset_version=version,
        history=history,
        n_resamples=bootstrap,
        tau_rel=vote.get("tau_rel"),
        tau_source=f"the checkpoint's meta: {vote.get('source', 'given')}",
        **inputs,
    )
    report["checkpoint"] = str(ck.path)
    modes_path = Path(layout.reports_dir(llm_tag, version)) / MODES_FILE
    if test_ids is None and modes_path.exists():  # the modes rows of this checkpoint (`modes_report`), if measured
        modes = json.loads(modes_path.read_text())
        if modes.get("checkpoint") == str(ck.path):
            report["modes"] = modes
    paths = write_report(report, out_dir or layout.reports_dir(llm_tag, version))
    return report, paths


MODES_FILE = "modes.json"


def run_modes(
    layout,
    llm_tag: str,
    version: str,
    student,
    *,
    k: int = 4,
    limit: int = 0,
    nudge_m: int = 4,
    nudge_teacher_forced: bool = False,
    plan_k: int = 2,
    plan_from_steps: int = 1,
    max_new_tokens: int = 160,
    bootstrap: int = 1000,
    device: str = "cpu",
    log: Log = None,
) -> dict:
    """OFF, RERANK, NUDGE and PLAN on the partition's test problems (`eval.modes.evaluate_modes`), with the newest
    checkpoint and the partition's latent decoder; writes reports/<llm>/<version>/modes.json and adds the rows to
    the eval report of the same checkpoint. Returns the modes result."""
    import time

    from rjepa_core.eval.modes import evaluate_modes
    from rjepa_core.eval.report import write_report
    from rjepa_core.io import atomic_write_json
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.decoder import load_decoder
    from rjepa_core.llm.prompting import examples_of
    from rjepa_core.schemas import read_records
    from rjepa_core.store.latents import LatentStore

    best = newest_checkpoint(layout, llm_tag, version)
    decoder = load_decoder(layout.decoder_dir(llm_tag, version), device=device)
    seqs = LatentStore(layout).read(llm_tag, version)
    ck = load_checkpoint(best, device=device)
    if not ck.meta.get("nudge"):  # trained before NUDGE: fit its threshold on validation now
        if log:
            log(f"{best} has no NUDGE threshold yet: fitting it on the validation split")
        tune_selection(layout, llm_tag, version, best, seqs, device=device)
        ck = load_checkpoint(best, device=device)
    problems = read_records(Problem, layout.problems_path(version))
    chains = read_records(ChainOfThought, layout.student_chains_path(llm_tag, version))
    t = time.monotonic()
    modes = evaluate_modes(
        student, ck, decoder, problems, chains, seqs, k=k, examples=examples_of(problems),
        layer_idx=ck.meta.get("layer_idx"), pooling=ck.meta.get("pooling"),
        question_pooling=ck.meta.get("question_pooling") or "token", nudge_m=nudge_m,
        nudge_teacher_forced=nudge_teacher_forced, plan_k=plan_k,
        plan_from_steps=plan_from_steps, max_new_tokens=max_new_tokens, limit=limit, n_resamples=bootstrap, log=log,
    )  # fmt: skip
    modes.update(llm_tag=llm_tag, dataset_version=version, checkpoint=str(ck.path),
                 wall_s=round(time.monotonic() - t, 1))  # fmt: skip
    out = Path(layout.reports_dir(llm_tag, version))
    atomic_write_json(out / MODES_FILE, modes)
    report_path = out / "report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        if report.get("checkpoint") == str(ck.path):
            write_report({**report, "modes": modes}, out)
    return modes


def fit_latent_decoder(
    layout,
    llm_tag: str,
    version: str,
    tokenizer,
    *,
    cfg=None,
    checkpoint_dir=None,
    pooling: str = "mean",
    device: str = "cpu",
    log: Log = None,
) -> dict:
    """Train the partition's latent decoder on its valid train-split steps, evaluate it on the valid val-split
    steps (with baselines) and, given a checkpoint, on R-JEPA's decoded predictions; save it atomically.

    Returns the decoder's meta (metrics included), as written to `layout.decoder_dir(llm_tag, version)`.
    """
    from rjepa_core.eval.decoding import decoding_report, prediction_report
    from rjepa_core.jepa.decoder import DecoderConfig, step_pairs, train_decoder
    from rjepa_core.store.latents import LatentStore

    store = LatentStore(layout)
    train_seqs = store.read(llm_tag, version, split="train", is_valid=True)
    val_seqs = store.read(llm_tag, version, split="val", is_valid=True)
    if not train_seqs:
        raise ValueError(f"no valid train-split latents for {llm_tag}/{version}: materialize `latents` first")
    train, val = step_pairs(train_seqs), step_pairs(val_seqs)
    if log:
        log(f"latent decoder: {len(train)} train steps ({len(train_seqs)} chains), {len(val)} val steps")
    trained = train_decoder(train, val, cfg or DecoderConfig(), log=log, device=device)
    metrics = {"held_out": decoding_report(trained, val, train, tokenizer)}
    checkpoint = None
    if checkpoint_dir is not None:
        from rjepa_core.jepa.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint_dir, device=device)
        if ck.model.hidden_size == trained.latent_dim:
            metrics["predictions"] = prediction_report(trained, ck.model, val_seqs, tokenizer)
            checkpoint = str(ck.path)
        elif log:
            log(f"checkpoint width {ck.model.hidden_size} != latent width {trained.latent_dim}: predictions skipped")
    first = train_seqs[0]
    trained.save(
        layout.decoder_dir(llm_tag, version),
        llm_tag=llm_tag,
        dataset_version=version,
        layer_idx=first.layer_idx,
        hidden_size=first.hidden_size,
        pooling=pooling,
        metrics=metrics,
        checkpoint=checkpoint,
    )
    return trained.meta

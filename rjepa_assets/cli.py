"""`rjepa` — the one command-line entry point for what is not done in the Dagster UI (SPEC F18).

    rjepa demo                       # register defaults, materialize the whole pipeline, print the eval
    rjepa ui                         # dagster dev on the same instance (http://127.0.0.1:3000)
    rjepa eval --llm smollm2-135m --version v1
    rjepa bench extraction           # writes bench/results/extraction.json
    rjepa bench load | fuzz | faults # service under load, schemathesis fuzzing, kill -9 tests (JSON in bench/results)
    rjepa train --llm smollm2-135m --version v1 --nproc 2   # R-JEPA on 2 torchrun processes (DDP)
    rjepa llms add my-llm --source Qwen/Qwen3-0.6B --hidden-size 1024
    rjepa llms add gemma3-270m --from configs/llms/gemma3-270m.yaml --registry /elsewhere/llms
    rjepa llms list                  # entries, and the install command of any that cannot load here
    rjepa serve --port 8000
    rjepa promote --llm smollm2-135m --version v1.fb1   # deploy a checkpoint (the service reloads it)
    rjepa rollback --llm smollm2-135m                   # back to the previously deployed checkpoint
    rjepa replay --llms smollm2-135m gemma3-270m --version v1   # own / adapter / warm start → bench/results/replay.json
    rjepa replay --llms gemma3-270m --version v1 --adapters-only  # materialize calibration_adapter only

Dagster state lives in the project's own instance (DAGSTER_HOME = the project root, storage under
.dagster_home/), so what `rjepa demo` materializes is what `rjepa ui` shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # progress lines, not step DEBUG events


def _instance():
    # dagster.yaml uses paths relative to the project root: always run from there.
    os.chdir(PROJECT_ROOT)
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT))
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)

    return dg.DagsterInstance.get()


def _register(instance, llm_tag: str, version: str) -> None:
    from rjepa_assets.defs.partitions import DATASET_VERSION, LLM

    for name, key in ((LLM, llm_tag), (DATASET_VERSION, version)):
        if key not in instance.get_dynamic_partitions(name):
            instance.add_dynamic_partitions(name, [key])


def _run_config(args) -> dict:
    ops: dict = {}
    chains = {"max_problems": getattr(args, "max_problems", 0), "k": getattr(args, "k", 0)}
    if any(chains.values()):
        ops["student_chains"] = {"config": {k: v for k, v in chains.items() if v}}
    if getattr(args, "train_steps", 0):
        ops["jepa_checkpoint"] = {"config": {"max_steps": args.train_steps}}
    if getattr(args, "teacher_forced", False):
        ops["latents"] = {"config": {"teacher_forced": True}}
    return {"ops": ops} if ops else {}


def _materialize(llm_tag: str, version: str, run_config: dict, selection: list[str] | None = None) -> None:
    instance = _instance()  # first: it silences Dagster's beta warnings before the definitions import
    from rjepa_assets.definitions import defs
    from rjepa_assets.defs.partitions import multi_key

    _register(instance, llm_tag, version)
    if selection is None or {"teacher_data", "problems", "gold_cots"} & set(selection):
        t = time.monotonic()
        res = defs.resolve_job_def("dataset_job").execute_in_process(
            partition_key=version, instance=instance, raise_on_error=False, run_config=QUIET
        )
        _check(res, "dataset_job", t)
    job = defs.resolve_job_def("llm_pipeline_job")
    if selection:
        keep = [s for s in selection if s not in ("teacher_data", "problems", "gold_cots")]
        if not keep:
            return
        import dagster as dg

        job = job.get_subset(asset_selection={dg.AssetKey(s) for s in keep})
    t = time.monotonic()
    res = job.execute_in_process(
        partition_key=multi_key(version, llm_tag),
        instance=instance,
        run_config={**QUIET, **run_config},
        raise_on_error=False,
    )
    _check(res, "llm_pipeline_job", t)


def _check(result, name: str, t0: float) -> None:
    status = "succeeded" if result.success else "FAILED"
    print(f"[rjepa] {name} run {result.run_id[:8]} {status} in {time.monotonic() - t0:.0f}s", flush=True)
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and ev.event_specific_data is not None:
                err = getattr(ev.event_specific_data, "error", None)
                if err is not None:
                    print(err.to_string(), file=sys.stderr)
        raise SystemExit(f"{name} failed: see the run in the UI (`rjepa ui`) or the error above")


def _print_summary(llm_tag: str, version: str) -> None:
    from rjepa_assets.defs.resources import StorageResource

    layout = StorageResource().layout()
    path = layout.reports_dir(llm_tag, version) / "report.json"
    if not path.exists():
        print(f"no eval report at {path}")
        return
    rep = json.loads(path.read_text())
    print(f"\n=== eval_report {llm_tag} / {version}: {rep.get('n_problems')} test problems ===")
    for k in rep.get("ks", [rep.get("k")]):
        print(f"  K={k}")
        for name, per_k in rep["methods"].items():
            m = per_k.get(f"k={k}")
            if not m:
                continue
            ci = m.get("ci95") or [float("nan"), float("nan")]
            auroc = m.get("auroc")
            auroc_s = f"  AUROC {auroc:.3f}" if isinstance(auroc, float) else ""
            print(f"    {name:<18} acc {m['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{auroc_s}")
    if "auroc_jepa" in rep:
        print(f"  JEPA-loss AUROC (correct vs incorrect): {rep['auroc_jepa']}")
    if "jepa_loss_by_correctness" in rep:
        print(f"  mean JEPA-loss correct vs incorrect: {rep['jepa_loss_by_correctness']}")
    by_source = rep.get("by_source") or {}
    if len(by_source) > 1:
        print(f"  by task family, K={rep.get('k')} (accuracy):")
        for src, row in by_source.items():
            accs = "  ".join(f"{n} {a:.3f}" for n, a in row["accuracy"].items())
            print(f"    {src:<32} {row['n_problems']:>3} problems  oracle {row['oracle_pass_at_k']:.3f}  {accs}")
    print(f"  report: {path.parent}/report.md")
    _print_decoder(layout, llm_tag, version)


def _print_decoder(layout, llm_tag: str, version: str) -> None:
    path = layout.decoder_dir(llm_tag, version) / "decoder.json"
    if not path.exists():
        return
    metrics = json.loads(path.read_text()).get("metrics") or {}
    held, pred = metrics.get("held_out") or {}, metrics.get("predictions") or {}
    if held.get("n"):
        shuffled = (held.get("baselines") or {}).get("shuffled_latent") or {}
        print(
            f"  latent decoder, {held['n']} held-out steps: token acc {held['token_accuracy']:.3f} "
            f"(shuffled latents {shuffled.get('token_accuracy', float('nan')):.3f}), exact match "
            f"{held['exact_match']:.3f}, numbers right {held['numeric_accuracy']:.3f}"
        )
    if pred.get("n"):
        print(
            f"  decoded R-JEPA predictions, {pred['n']} masked steps: numbers right {pred['numeric_accuracy']:.3f}, "
            f"arithmetically right {pred['arithmetically_right']:.3f} of {pred['n_checkable']} checkable"
        )


PIPELINE = ("student_chains", "latents", "jepa_checkpoint", "latent_decoder", "eval_report")  # llm_pipeline_job


def cmd_demo(args) -> None:
    t = time.monotonic()
    start = getattr(args, "from_asset", None)
    # --from latents: keep the sampled chains, redo latents → checkpoint → report (e.g. after a config change)
    selection = list(PIPELINE[PIPELINE.index(start) :]) if start else None
    run_config = _run_config(args)
    skipped = sorted(set(run_config.get("ops", {})) - set(selection or PIPELINE), key=PIPELINE.index)
    if skipped:
        flags = {"student_chains": "--k / --max-problems", "latents": "--teacher-forced"}
        raise SystemExit(
            f"--from {start} does not re-materialize {', '.join(skipped)}, so "
            f"{', '.join(flags.get(a, a) for a in skipped)} would have no effect: drop them, "
            f"or start earlier (--from {skipped[0]})"
        )
    _materialize(args.llm, args.version, run_config, selection=selection)
    _print_summary(args.llm, args.version)
    print(f"\n[rjepa] pipeline materialized through Dagster in {time.monotonic() - t:.0f}s.")
    print("[rjepa] open the UI on the same instance:  make ui   (or: .venv/bin/rjepa ui)")
    print("        then http://127.0.0.1:3000 → Assets → jepa_checkpoint / eval_report for the materializations.")


def cmd_eval(args) -> None:
    _materialize(args.llm, args.version, _run_config(args), selection=["eval_report"])
    _print_summary(args.llm, args.version)


def cmd_eval_modes(args) -> None:
    """Materialize `modes_report` (OFF, RERANK, NUDGE, PLAN on the test split) through Dagster, print it and keep it
    in bench/results/modes_<version>.json with the command that made it."""
    instance = _instance()
    from rjepa_assets.definitions import defs
    from rjepa_assets.defs.partitions import multi_key
    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.io import atomic_write_json
    from rjepa_core.pipeline import MODES_FILE

    _register(instance, args.llm, args.version)
    cfg = {"k": args.k, "limit": args.limit, "plan_from_steps": args.plan_from_steps}
    if args.nudge_teacher_forced:
        cfg["nudge_teacher_forced"] = True
    t = time.monotonic()
    res = defs.resolve_job_def("modes_job").execute_in_process(
        partition_key=multi_key(args.version, args.llm),
        instance=instance,
        run_config={**QUIET, "ops": {"modes_report": {"config": cfg}}},
        raise_on_error=False,
    )
    _check(res, "modes_job", t)
    layout = StorageResource().layout()
    report = json.loads((Path(layout.reports_dir(args.llm, args.version)) / MODES_FILE).read_text())
    report["command"] = " ".join(["rjepa", *sys.argv[1:]])
    out = Path(args.out) / f"modes_{args.version}.json"
    atomic_write_json(out, report)
    print(f"=== modes on {args.llm}/{args.version}: {report['n_problems']} test problems, K={args.k} ===")
    for m, a in report["accuracy"].items():
        lo, hi = report["ci95"][m]
        d = report["vs_off"].get(m)
        vs = f"  vs OFF {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else ""
        print(f"  {m:<28} acc {a:.3f} [{lo:.3f}, {hi:.3f}]{vs}  tokens {report['mean_tokens'][m]:.0f}")
    print(f"[rjepa] wrote {out}")


def _deploy(job_name: str, op: str, cfg: dict) -> None:
    """Run promote_checkpoint / rollback_checkpoint on the project's instance: the move is a materialization
    of `deployed_checkpoint`, as when the UI launches it."""
    instance = _instance()
    from rjepa_assets.definitions import defs
    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.store.pointers import read_latest_checkpoint

    t = time.monotonic()
    res = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config={**QUIET, "ops": {op: {"config": cfg}}}, raise_on_error=False
    )
    _check(res, job_name, t)
    if not res.success:
        raise SystemExit(1)
    pointer = read_latest_checkpoint(StorageResource().layout(), cfg["llm_tag"])
    print(f"[rjepa] {cfg['llm_tag']} now serves {pointer['run_id']} ({pointer['dataset_version']}): {pointer['path']}")


def cmd_promote(args) -> None:
    cfg = {"llm_tag": args.llm, "dataset_version": args.version, "run_id": args.run_id or ""}
    _deploy("promote_checkpoint", "promote_op", cfg)


def cmd_rollback(args) -> None:
    _deploy("rollback_checkpoint", "rollback_op", {"llm_tag": args.llm})


def cmd_ui(args) -> None:
    _instance()
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print("[rjepa] " + " ".join(cmd))
    raise SystemExit(subprocess.call(cmd, cwd=PROJECT_ROOT))


SERVICE_BENCHES = {  # benches that run the service or Dagster (not rjepa_core): scripts and tests, as subprocesses
    "load": (["bench/load_service.py"], ["--duration", "5", "--burst", "24"], "service_load.json"),
    "fuzz": (["bench/fuzz_service.py"], ["--requests", "300", "--per-round", "10"], "fuzz.json"),
    "faults": (["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/assets/test_faults.py"], [], "faults.json"),
}


def _service_bench(args) -> None:
    script, quick, name = SERVICE_BENCHES[args.name]
    out = Path(args.out) / name
    env = dict(os.environ)
    cmd = [sys.executable, *script, *(quick if args.quick else [])]
    if args.name == "faults":
        env["RJEPA_FAULTS_OUT"] = str(out)
    else:
        cmd += ["--out", str(out)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    print("[rjepa] " + " ".join(shlex.quote(c) for c in cmd))
    rc = subprocess.call(cmd, cwd=PROJECT_ROOT, env=env)
    if rc == 0 and out.exists():
        print(f"[rjepa] wrote {out}")
    raise SystemExit(rc)


REPEATED_BENCHES = {"extraction", "scoring", "generation"}  # the benches that alternate two sides `repeats` times


def cmd_bench(args) -> None:
    if args.name in SERVICE_BENCHES:
        return _service_bench(args)
    from rjepa_core.bench import run_benchmark

    kw = {}
    if args.repeats is not None:
        if args.name not in REPEATED_BENCHES:
            raise SystemExit(f"--repeats applies to {', '.join(sorted(REPEATED_BENCHES))}, not to {args.name}")
        if args.repeats < 1:
            raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
        kw["repeats"] = args.repeats
    result = run_benchmark(args.name, out_dir=args.out, quick=args.quick, **kw)
    print(json.dumps(result, indent=2, default=str))


def cmd_train(args) -> None:
    """Train R-JEPA on a partition's stored latents, in this process or on --nproc torchrun processes.

    The raw trainer only (checkpoints under --out); the `jepa_checkpoint` asset also calibrates and
    publishes (set its `training.nproc` resource to train the same way)."""
    from datetime import UTC, datetime

    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.jepa import ddp

    if args.nproc < 1:
        raise SystemExit(f"rjepa: --nproc must be >= 1, got {args.nproc}")
    layout = StorageResource().layout()
    config = Path(args.config)
    if not config.suffix:
        config = PROJECT_ROOT / "configs" / "rjepa" / f"{args.config}.yaml"
    run_id = datetime.now(UTC).strftime("cli-%Y%m%dT%H%M%S")
    out = args.out or str(layout.checkpoint_dir(args.llm, args.version, run_id))
    argv = ["--store", str(layout.root), "--llm", args.llm, "--version", args.version, "--config", str(config)]
    argv += ["--out", out, "--max-steps", str(args.max_steps), "--device", args.device]
    if args.nproc == 1:
        ddp.main(argv)
    else:
        res = ddp.launch_training(
            args.nproc,
            store=layout.root,
            llm_tag=args.llm,
            version=args.version,
            config=config,
            out_dir=out,
            max_steps=args.max_steps,
            device=args.device,
            log=print,
        )
        print(f"[rjepa] {res.steps} steps on {args.nproc} processes; best checkpoint {res.checkpoint_dir}")
    if layout.remote is not None:  # object storage: the training processes wrote the cache only
        layout.remote.push()


def _registry_dir(args) -> Path:
    """Where the sensor reads the registry: --registry, else $RJEPA_CONFIGS/llms, else <project>/configs/llms."""
    if getattr(args, "registry", None):
        return Path(args.registry)
    return Path(os.environ.get("RJEPA_CONFIGS") or PROJECT_ROOT / "configs") / "llms"


LLM_FLAGS = ("source", "gguf_file", "layer_idx", "dtype", "batch_size", "hidden_size", "quantization", "description")


def cmd_llms_add(args) -> None:
    """Write <registry>/<tag>.yaml from flags, or copy a YAML (`--from`, flags override its fields)."""
    from rjepa_core.io import atomic_write_text
    from rjepa_core.llm.embedded import missing_package
    from rjepa_core.llm.registry import LLMSpec, load_registry, load_spec

    overrides = {k: getattr(args, k) for k in LLM_FLAGS if getattr(args, k) is not None}
    if args.from_yaml:
        base = load_spec(args.from_yaml)
    elif "source" not in overrides:
        raise SystemExit("rjepa llms add: give --source (hub id, local folder, .gguf or embedded:…) or --from FILE")
    else:
        base = None
    data = {**(base.to_dict() if base else {}), **overrides, "llm_tag": args.tag}
    spec = LLMSpec(**data)  # validates: a bad field fails here, before anything is written
    registry = _registry_dir(args)
    path = registry / f"{args.tag}.yaml"
    if path.exists() and not args.force:
        raise SystemExit(f"{path} exists: pass --force to replace it")
    if registry.is_dir() and not path.exists() and args.tag in load_registry(registry):
        raise SystemExit(f"llm_tag {args.tag!r} is already defined by another file in {registry}: pick another tag")
    if base is not None and not overrides and base.llm_tag == args.tag:
        text = Path(args.from_yaml).read_text(encoding="utf-8")  # a plain copy keeps the file's comments
    else:
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    atomic_write_text(path, text)
    print(f"wrote {path}: the llm_registry_sensor adds the `{args.tag}` partition and backfills it")
    missing = missing_package(spec.source)
    if missing:
        print(f"note: {missing}; the sensor waits for it before it backfills `{args.tag}`")


def cmd_llms_list(args) -> None:
    from rjepa_core.llm.embedded import missing_package
    from rjepa_core.llm.registry import load_registry

    for tag, spec in load_registry(_registry_dir(args)).items():
        if spec.source.startswith("embedded:"):
            status = missing_package(spec.source) or "installed"
        elif spec.source.startswith((".", "/", "~")) or spec.source.endswith(".gguf"):
            status = "found" if Path(spec.source).expanduser().exists() else "path does not exist"
        else:
            status = "hub id: loads from the local Hugging Face cache"
        row = f"{tag:<16} {spec.kind:<8} hidden {spec.hidden_size!s:<5} layer {spec.layer_idx:<3} {spec.source}"
        print(f"{row}  [{status}]")


def cmd_serve(args) -> None:
    from rjepa_serve.app import serve

    serve(host=args.host, port=args.port)


def _layer_latents(args, layout, student_chains, layers: set) -> dict:
    """Latents of the train/val chains at other student layers or poolings (layer_idx / pooling variants),
    extracted now; keys as `rjepa_core.eval.ablation.extraction_key` gives them."""
    if not layers:
        return {}
    from rjepa_assets.defs.resources import StudentLLMResource
    from rjepa_core.eval.ablation import unpack_key
    from rjepa_core.pipeline import extract_latents
    from rjepa_core.schemas import ChainOfThought, Problem, read_records

    problems = [p for p in read_records(Problem, layout.problems_path(args.version)) if p.split in ("train", "val")]
    keep = {p.problem_id for p in problems}
    cots = read_records(ChainOfThought, layout.cots_path(args.version)) + list(student_chains)
    cots = [c for c in cots if c.problem_id in keep and not c.meta.get("greedy")]
    student = StudentLLMResource().load(args.llm)
    out = {}
    for key in sorted(layers, key=str):
        layer, pooling, question = unpack_key(key)
        tic = time.monotonic()
        out[key] = extract_latents(student, problems, cots, layer_idx=layer, pooling=pooling, question_pooling=question)
        how = (
            f"layer {student.spec.layer_idx if layer is None else layer}, {pooling or student.spec.pooling} pooling, "
            f"question {question or student.spec.question_pooling}"
        )
        print(f"[rjepa] extracted {len(cots)} train/val chains at {how} in {time.monotonic() - tic:.0f}s")
    return out


def _extra_train_latents(args, layout, keys) -> dict:
    """Latents of the gold chains of `args.extra_train`'s train_only problems that `args.version` does not
    have, rendered with `args.version`'s prompt examples (the prompt its chains were sampled with), once per
    extraction key (None: the registry's layer and poolings)."""
    from rjepa_assets.defs.resources import StudentLLMResource
    from rjepa_core.eval.ablation import unpack_key
    from rjepa_core.llm.prompting import RANK_KEY
    from rjepa_core.pipeline import extract_latents
    from rjepa_core.schemas import ChainOfThought, Problem, read_records

    path = layout.problems_path(args.extra_train)
    if not path.exists():
        raise SystemExit(f"no problems for {args.extra_train}: run `rjepa demo --version {args.extra_train}` first")
    own = read_records(Problem, layout.problems_path(args.version))
    have = {p.problem_id for p in own}
    extra = [p for p in read_records(Problem, path) if p.train_only and p.problem_id not in have]
    if not extra:
        raise SystemExit(f"{args.extra_train} has no train_only problems that {args.version} lacks")
    keep = {p.problem_id for p in extra}
    cots = [c for c in read_records(ChainOfThought, layout.cots_path(args.extra_train)) if c.problem_id in keep]
    examples = [p for p in own if RANK_KEY in (p.meta or {})]
    student, out = StudentLLMResource().load(args.llm), {}
    for key in sorted(keys, key=str):
        layer, pooling, question = unpack_key(key)
        tic = time.monotonic()
        out[key] = extract_latents(
            student, extra + examples, cots, layer_idx=layer, pooling=pooling, question_pooling=question
        )
        took = time.monotonic() - tic
        print(f"[rjepa] extracted {len(cots)} train-only gold chains of {args.extra_train} ({key}) in {took:.0f}s")
    return out


def _variant_arg(text: str) -> dict:
    """One `--variant` of `rjepa ablate`: a JSON object with a name and config section overrides."""
    try:
        variant = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f'--variant {text!r} is not JSON ({exc.msg}); e.g. \'{{"name": "x", "loss": {{...}}}}\''
        ) from None
    if not isinstance(variant, dict) or not isinstance(variant.get("name"), str) or not variant["name"]:
        raise SystemExit(f'--variant {text!r} must be a JSON object with a non-empty "name"')
    return variant


def cmd_ablate(args) -> None:
    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.eval.ablation import DEFAULT_SWEEP, cross_validated_ablations, extraction_key
    from rjepa_core.io import atomic_write_json
    from rjepa_core.pipeline import load_rjepa_config
    from rjepa_core.schemas import ChainOfThought, read_records
    from rjepa_core.store.latents import LatentStore

    layout = StorageResource().layout()
    chains_path = layout.student_chains_path(args.llm, args.version)
    if not chains_path.exists():
        raise SystemExit(
            f"no student chains at {chains_path}: run `rjepa demo --llm {args.llm} --version {args.version}` first"
        )
    seqs = LatentStore(layout).read(args.llm, args.version)
    if not seqs:
        raise SystemExit(f"no latents for {args.llm}/{args.version}: materialize `latents` first")
    chains = read_records(ChainOfThought, chains_path)
    base = load_rjepa_config(args.config, int(seqs[0].H.shape[1]))
    extra = [{"name": f"layer_idx {layer}", "layer_idx": layer} for layer in args.layers or []]
    extra += [{"name": f"pooling {pooling}", "pooling": pooling} for pooling in args.pooling or []]
    extra += [{"name": f"question {q}", "question_pooling": q} for q in args.question_pooling or []]
    extra += [
        {"name": f"{n} student chains per problem", "chains_per_problem": n} for n in args.chains_per_problem or []
    ]
    extra += [{"name": f"seed {n}", "train": {"seed": n}, "mask": {"seed": n}} for n in args.seeds or []]
    if args.extra_train:
        with_extra = [{**v, "name": f"{v['name']} + train-only gold of {args.extra_train}"} for v in extra]
        extra += [{"name": f"+ train-only gold chains of {args.extra_train}", "extra_train": True}]
        extra += [{**v, "extra_train": True} for v in with_extra]
    sweep = [v for v in DEFAULT_SWEEP + extra if not args.only or any(o in v["name"] for o in args.only)]
    sweep += [_variant_arg(text) for text in args.variant or []]  # asked for by name: --only does not filter them
    t = time.monotonic()
    keys = {extraction_key(v) for v in sweep} - {None}
    layers = _layer_latents(args, layout, chains, keys)
    extra_keys = {extraction_key(v) for v in sweep if v.get("extra_train")}
    extra_train = _extra_train_latents(args, layout, extra_keys) if extra_keys else None

    def show(row):
        if row["error"]:
            print(f"  {row['name']:<32} error: {row['error']}")
        else:
            print(
                f"  {row['name']:<32} AUROC {row['auroc']:.3f}"
                f"  within-problem {row['auroc_within_problem'] or float('nan'):.3f}"
                f"  rerank {row['rerank_accuracy']:.3f} (majority {row['majority_accuracy']:.3f})"
                f"  {row['train_s']:.0f}s"
            )
            sel = row.get("selection") or {}
            print("    held-out selection: " + "  ".join(f"{m} {sel[m]:.3f}" for m in sel if isinstance(sel[m], float)))

    print(f"[rjepa] {len(sweep)} variants x {args.folds} folds on the train+val problems of {args.llm}/{args.version}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = cross_validated_ablations(
            seqs,
            chains,
            sweep,
            out_dir=tmp,
            base_config=base,
            folds=args.folds,
            log=show,
            layers=layers,
            extra_train=extra_train,
            dump_dir=layout.reports_dir(args.llm, args.version) / "ablations",
        )
    command = "rjepa ablate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    for row in rows:
        row.update(command=command, measured_at=datetime.now(UTC).date().isoformat())
    out = Path(args.out) / ("ablations.json" if args.version == "v1" else f"ablations_{args.version}.json")
    # rows of earlier runs stay (a re-run variant replaces its row): the file is the version's ablation table
    earlier = json.loads(out.read_text()).get("rows", []) if out.exists() else []
    names = {r["name"] for r in rows}
    rows = [r for r in earlier if r.get("name") not in names] + rows
    result = {
        "llm_tag": args.llm,
        "dataset_version": args.version,
        "config": str(args.config),
        "folds": args.folds,
        "protocol": "problem-level k-fold over train+val; train on valid chains of other folds, "
        "early-stop on held-out gold, score held-out sampled candidates",
        "wall_s": time.monotonic() - t,
        "rows": rows,
    }
    atomic_write_json(out, result)
    print(f"[rjepa] wrote {out}")


def _adapter_materializer(args, store: str):
    """A function materializing `calibration_adapter` for one llm on args.version (a real Dagster run)."""

    def ensure(llm_tag: str) -> None:
        instance = _instance()
        import dagster as dg

        from rjepa_assets.defs.partitions import multi_key
        from rjepa_assets.defs.resources import ConfigsResource, StorageResource
        from rjepa_assets.defs.transfer.assets import calibration_adapter

        _register(instance, llm_tag, args.version)
        op = {"reference_llm": args.reference, "method": args.adapter_method, "steps": args.adapter_steps,
              "device": args.device}  # fmt: skip
        t = time.monotonic()
        res = dg.materialize(
            [calibration_adapter],
            partition_key=multi_key(args.version, llm_tag),
            instance=instance,
            resources={"storage": StorageResource(root=store), "configs": ConfigsResource()},
            run_config={**QUIET, "ops": {"calibration_adapter": {"config": op}}},
            raise_on_error=False,
        )
        _check(res, f"calibration_adapter {args.version}|{llm_tag}", t)
        for ev in res.get_asset_check_evaluations():
            print(f"[rjepa]   check {ev.check_name}: {'passed' if ev.passed else 'FAILED'}", flush=True)

    return ensure


def cmd_replay(args) -> None:
    """SPEC F13 comparison of students on one dataset version (rjepa_core.transfer.replay)."""
    from rjepa_assets.defs.resources import StorageResource
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.transfer.fitting import AdapterFitConfig
    from rjepa_core.transfer.replay import markdown_table, replay, write_replay

    store = args.store or StorageResource().uri()
    layout = StorageLayout(store)
    ensure = _adapter_materializer(args, store)
    if args.adapters_only:
        for llm in args.llms:
            if llm != args.reference:
                ensure(llm)
        return
    chains_of = dict(item.split("=", 1) for item in args.chains_of)
    for tag in [t for t in args.encode if t in args.llms]:  # an encoder's latents of another's chains, once
        if LatentStore(layout).count(tag, args.version) == 0:
            from rjepa_assets.defs.resources import StudentLLMResource
            from rjepa_core.transfer.replay import encode_latents

            student = StudentLLMResource(device=args.device).load(tag)
            encode_latents(layout, student, args.version, chains_of.get(tag, args.reference), log=print)
    fit_cfg = AdapterFitConfig(method=args.adapter_method, steps=args.adapter_steps)
    t = time.monotonic()
    report = replay(
        layout, args.llms, args.version, reference=args.reference, chains_of=chains_of, ks=tuple(args.ks),
        bootstrap=args.bootstrap, transfer_steps=args.transfer_steps, transfer_lr=args.transfer_lr,
        fit_cfg=fit_cfg, refit=args.refit, ensure_adapter=ensure, device=args.device,
        log=lambda m: print(f"[rjepa] {m}", flush=True),
    )  # fmt: skip
    report["wall_minutes"] = round((time.monotonic() - t) / 60, 2)
    report["store"] = str(store)
    report["command"] = " ".join(["rjepa", *sys.argv[1:]])
    out = Path(args.out)
    write_replay(report, out)
    table = markdown_table(report)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"[rjepa] wrote {out} and {out.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="rjepa", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def pipeline_args(p):
        p.add_argument("--llm", default="smollm2-135m", help="llm_tag from configs/llms/")
        p.add_argument("--version", default="v1", help="dataset version from configs/datasets/")
        p.add_argument("--max-problems", type=int, default=0, help="cap problems per split (quick runs)")
        p.add_argument("--train-steps", type=int, default=0, help="override JEPA training steps")
        p.add_argument("--k", type=int, default=0, help="chains sampled per train/val problem (default: the asset's 2)")

    p = sub.add_parser("demo", help="materialize the whole pipeline on the embedded default")
    pipeline_args(p)
    p.add_argument(
        "--from",
        dest="from_asset",
        choices=PIPELINE,
        default=None,
        help="re-materialize from this asset downstream only (its upstream must exist), e.g. --from latents",
    )
    p.add_argument(
        "--teacher-forced",
        action="store_true",
        help="`latents`: extract every chain teacher-forced, ignoring the student chains' latents captured while "
        "sampling (compare: rjepa demo --from latents --teacher-forced)",
    )
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("eval", help="(re)materialize eval_report for one partition and print it")
    pipeline_args(p)
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("eval-modes", help="OFF vs RERANK vs NUDGE vs PLAN on a partition's test problems")
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--version", default="v1")
    p.add_argument("--k", type=int, default=4, help="RERANK candidates (the first K sampled test chains)")
    p.add_argument("--limit", type=int, default=0, help="first N test problems only (0 = all)")
    p.add_argument("--plan-from-steps", type=int, default=1, help="PLAN after the greedy chain's first N steps")
    p.add_argument(
        "--nudge-teacher-forced",
        action="store_true",
        help="NUDGE re-extracts each chain prefix teacher-forced instead of using the latents captured while sampling",
    )
    p.add_argument("--out", default=str(PROJECT_ROOT / "bench" / "results"))
    p.set_defaults(fn=cmd_eval_modes)
    p = sub.add_parser("ui", help="start the Dagster UI on the project's instance")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(fn=cmd_ui)
    p = sub.add_parser("bench", help="run a benchmark, write bench/results/<name>.json")
    p.add_argument("name", choices=["extraction", "training", "scoring", "generation", "ddp", *SERVICE_BENCHES])
    p.add_argument("--out", default=str(PROJECT_ROOT / "bench" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny model, seconds")
    p.add_argument("--repeats", type=int, help="side-by-side pairs for extraction/scoring/generation (default 2-3)")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("train", help="train R-JEPA on stored latents, optionally on N torchrun processes (DDP)")
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--version", default="v1")
    p.add_argument("--config", default="default", help="configs/rjepa/<name>.yaml or a path")
    p.add_argument("--nproc", type=int, default=1, help="processes: >1 runs torchrun --nproc-per-node N")
    p.add_argument("--max-steps", type=int, default=0, help=">0 overrides optim.total_steps")
    p.add_argument("--device", default="auto", help="auto = one CUDA device per process, else CPU (gloo)")
    p.add_argument("--out", default="", help="run folder (default checkpoints/<llm>/<version>/cli-<time>/)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("ablate", help="cross-validated R-JEPA ablations on a partition's train+val problems")
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--version", default="v1")
    p.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "rjepa" / "default.yaml"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", nargs="*", default=None, help="run the variants whose name contains one of these")
    p.add_argument(
        "--layers",
        nargs="*",
        type=int,
        default=None,
        help="also try these student layers (extracts the train/val chains at each, minutes per layer on CPU)",
    )
    p.add_argument(
        "--pooling",
        nargs="*",
        choices=["mean", "last", "mean_last"],
        default=None,
        help="also try these step poolings at the registry's layer (extracts the train/val chains again)",
    )
    p.add_argument(
        "--question-pooling",
        nargs="*",
        choices=["token", "span"],
        default=None,
        help="also try these question latents (token before the first step | mean over the question's tokens)",
    )
    p.add_argument(
        "--extra-train",
        default=None,
        metavar="VERSION",
        help="also try adding the gold chains of VERSION's train_only problems to every fold's training chains",
    )
    p.add_argument(
        "--chains-per-problem",
        nargs="*",
        type=int,
        default=None,
        help="also train on at most N valid student chains per problem (how much more sampling buys)",
    )
    p.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=None,
        help="also train the default with these seeds (data order, masks, init): the seed-to-seed spread, "
        "and the scores of a seed ensemble in the dumps (bench/ensemble_study.py)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="JSON",
        help='also run this variant (whatever --only says): {"name": ..., "loss": {...}, ...} (config section '
        "overrides; repeatable)",
    )
    p.add_argument(
        "--out",
        default=str(PROJECT_ROOT / "bench" / "results"),
        help="folder of ablations.json (v1) or ablations_<version>.json",
    )
    p.set_defaults(fn=cmd_ablate)
    p = sub.add_parser("serve", help="start the FastAPI service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("replay", help="students under own checkpoint / reference via adapter / warm start (F13)")
    p.add_argument("--store", default="", help="storage root (default $RJEPA_STORAGE or <project>/.rjepa/store)")
    p.add_argument("--version", default="v1")
    p.add_argument("--llms", nargs="+", default=["smollm2-135m", "gemma3-270m", "minilm-l6"])
    p.add_argument("--reference", default="smollm2-135m", help="llm whose LATEST checkpoint the adapters map into")
    p.add_argument(
        "--chains-of",
        nargs="*",
        default=["minilm-l6=smollm2-135m"],
        help="LLM=OTHER: evaluate LLM's latents on OTHER's sampled chains (an encoder writes none)",
    )
    p.add_argument(
        "--encode",
        nargs="*",
        default=["minilm-l6"],
        help="llms (encoders) whose latents of their --chains-of chains are extracted here when the store has none",
    )
    p.add_argument("--ks", nargs="+", type=int, default=[4, 8])
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--transfer-steps", type=int, default=300, help="fine-tune steps (warm start and scratch)")
    p.add_argument("--transfer-lr", type=float, default=1e-4)
    p.add_argument("--adapter-method", default="jepa", choices=["jepa", "procrustes", "ridge"])
    p.add_argument("--adapter-steps", type=int, default=300)
    p.add_argument("--refit", action="store_true", help="fit the adapters again even when one is published")
    p.add_argument("--adapters-only", action="store_true", help="only materialize calibration_adapter")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(PROJECT_ROOT / "bench" / "results" / "replay.json"))
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("promote", help="deploy a checkpoint by hand (moves LATEST; the service reloads it)")
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--version", required=True, help="dataset version of the checkpoint's partition")
    p.add_argument("--run-id", default="", help="one training run of that partition (default: its newest)")
    p.set_defaults(fn=cmd_promote)
    p = sub.add_parser("rollback", help="deploy again the checkpoint deployed before the current one")
    p.add_argument("--llm", default="smollm2-135m")
    p.set_defaults(fn=cmd_rollback)
    p = sub.add_parser("llms", help="manage the LLM registry")
    lsub = p.add_subparsers(dest="llms_cmd", required=True)
    a = lsub.add_parser("add", help="add configs/llms/<tag>.yaml (from flags, or a copy of a YAML with --from)")
    a.add_argument("tag")
    a.add_argument("--from", dest="from_yaml", default=None, help="registry YAML to copy (e.g. a shipped entry)")
    a.add_argument("--source", default=None, help="hub id, local folder, .gguf path or embedded:smollm2|gemma3")
    a.add_argument("--gguf-file", default=None)
    a.add_argument("--layer-idx", type=int, default=None, help="default -2 (second-to-last)")
    a.add_argument("--dtype", default=None, help="auto | float32 | bfloat16 | float16 (default auto)")
    a.add_argument("--batch-size", type=int, default=None, help="default 8")
    a.add_argument("--hidden-size", type=int, default=None)
    a.add_argument("--quantization", default=None)
    a.add_argument("--description", default=None)
    a.add_argument("--registry", default=None, help="registry folder (default $RJEPA_CONFIGS/llms or configs/llms)")
    a.add_argument("--force", action="store_true")
    a.set_defaults(fn=cmd_llms_add)
    a = lsub.add_parser("list", help="the registry's entries and whether each can load here")
    a.add_argument("--registry", default=None, help="registry folder (default $RJEPA_CONFIGS/llms or configs/llms)")
    a.set_defaults(fn=cmd_llms_list)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except ValueError as e:
        raise SystemExit(f"rjepa: {e}") from None


if __name__ == "__main__":
    main()

"""Per-LLM assets [llm × dataset_version]: sampled student chains and step latents."""

from collections import Counter

import dagster as dg
import numpy as np
from dagster_duckdb import DuckDBResource

from rjepa_assets.defs.metadata import md_table
from rjepa_assets.defs.partitions import by_version, llm_x_version, split_key
from rjepa_assets.defs.resources import StorageResource, StudentLLMResource
from rjepa_core.captured import clear_captured, settings_of, stage_captured, usable_captured
from rjepa_core.llm.extraction import pooled_width
from rjepa_core.llm.inherit import clear_latent_provenance, inherit_chains, parent_of, write_latent_provenance
from rjepa_core.llm.prompting import examples_of
from rjepa_core.llm.resume import inputs_fingerprint, resumable_staging, staged_shards
from rjepa_core.llm.sharded import (
    discard_staging,
    extract_shards,
    extraction_chunk,
    partition_inputs,
    plan_shards,
    reusable_latents,
    run_workers,
)
from rjepa_core.pipeline import sample_student_chains_with_latents
from rjepa_core.schemas import ChainOfThought, Problem, read_records, write_records
from rjepa_core.store.index import build_index
from rjepa_core.store.latents import LatentStore

GPU_POOL = "gpu"  # one GPU-heavy step at a time per device (dagster.yaml sets the pool limit)
# The same steps on Kubernetes (RJEPA_EXECUTOR=k8s, one pod per step): each pod asks for one GPU and tolerates
# the usual GPU-node taint. Inert under the in-process and multiprocess executors.
GPU_OP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
}


class StudentChainsConfig(dg.Config):
    k: int = 2  # samples per train/val problem (JEPA targets when correct; verifier/probe training data)
    k_test: int = 8  # samples per test problem (the evaluation candidates)
    temperature: float = 0.7
    max_new_tokens: int = 80
    seed: int = 0
    greedy_test: bool = True  # also decode one greedy chain per test problem (the OFF baseline)
    max_problems: int = 0  # 0 = all; >0 keeps the first N of each split (quick runs)
    batch_size: int = 32  # sequences per generate() call: CPU decoding is ~3x faster at 32 than at 8
    # record the chains' step latents while sampling (staged for `latents`; the registry's
    # latents_from_sampling must allow it too); false = `latents` teacher-forces them
    capture_latents: bool = True

    def sampling(self) -> dict:
        """The settings that decide what is sampled (and so whether a parent's chains can be inherited)."""
        return {
            "k": self.k,
            "k_test": self.k_test,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "greedy_test": self.greedy_test,
        }

    # a child version (`parent:` in its config) takes the parent's chains of the problems both hold when they
    # were sampled with these same settings (rjepa_core.llm.inherit), and samples only the others
    inherit: bool = True


class LatentsConfig(dg.Config):
    shard_size: int = 1024  # sequences per shard file: the unit of parallel extraction (< 64 or a multiple of 64)
    # >1: that many processes extract disjoint shard ranges side by side into a staging folder, then one
    # swap commits the set (rjepa_core.llm.sharded); 1 extracts in the run's own process, as always
    workers: int = 1
    worker_threads: int = 0  # torch threads per worker process (0 = CPU cores // workers)
    # true = teacher-forced extraction of every chain, ignoring the student chains' latents captured while
    # sampling (`student_chains`); false = commit those and extract only the others (gold, teacher, ...)
    teacher_forced: bool = False


def _limit(rows: list[Problem], n: int) -> list[Problem]:
    if not n:
        return rows
    out, seen = [], Counter()
    for p in rows:
        if seen[p.split] < n:
            out.append(p)
            seen[p.split] += 1
    return out


@dg.asset(
    partitions_def=llm_x_version,
    deps=[dg.AssetDep("problems", partition_mapping=by_version)],
    group_name="student",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch", "parquet"},
    description="K chains per problem sampled from the student, labelled correct/incorrect, with log-probs.",
)
def student_chains(
    context: dg.AssetExecutionContext,
    config: StudentChainsConfig,
    storage: StorageResource,
    student_llm: StudentLLMResource,
):
    layout, meta = storage.layout(), {}
    for key in context.partition_keys:
        version, tag = split_key(key)
        every = read_records(Problem, layout.problems_path(version))
        rows = _limit(every, config.max_problems)
        student = student_llm.load(tag)
        capture = config.capture_latents and student.spec.latents_from_sampling
        examples = examples_of(every)  # the version's prompt examples, even when max_problems drops them
        inherited, inherited_seqs, report = _inherited(context, config, layout, student, version, rows, examples)
        clear_captured(layout, tag, version)  # the staged latents of the previous chains are stale from here on
        covered = {c.problem_id for c in inherited}
        chains, captured, stats = sample_student_chains_with_latents(
            student,
            [p for p in rows if p.problem_id not in covered],
            examples=examples,
            **config.sampling(),
            batch_size=config.batch_size,
            capture=capture,
            log=context.log.info,
        )
        chains, captured = inherited + chains, (inherited_seqs if capture else []) + captured
        write_records(chains, layout.student_chains_path(tag, version), ChainOfThought)
        if capture:
            stage_captured(layout, tag, version, chains, captured, settings_of(student.spec))
        sampled = [c for c in chains if not c.meta.get("greedy")]
        greedy = [c for c in chains if c.meta.get("greedy")]
        meta[str(key)] = {
            "num_problems": len(rows),
            "num_chains": len(chains),
            "sample_accuracy": round(float(np.mean([c.is_valid for c in sampled])), 4) if sampled else None,
            "greedy_accuracy": round(float(np.mean([c.is_valid for c in greedy])), 4) if greedy else None,
            "mean_new_tokens": round(float(np.mean([c.meta["num_new_tokens"] for c in chains])), 1),
            "captured_latents": len(captured),
            "capture_s": round(stats.seconds, 3) if stats is not None else None,
            **({"inherited": dg.MetadataValue.json(report)} if report else {}),
        }
    only = next(iter(meta.values())) if len(meta) == 1 else {}
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in only.items() if v is not None},
            "partitions": md_table([{"partition": k, **v} for k, v in meta.items()]),
        }
    )


def _inherited(context, config: StudentChainsConfig, layout, student, version, rows, examples):
    """(chains, their captured latents, report) inherited from `version`'s parent; nothing without one."""
    tag = student.llm_tag
    parent = parent_of(layout, version) if config.inherit else None
    if not parent:
        return [], [], {}
    parent_path = layout.student_chains_path(tag, parent)
    if not parent_path.exists():
        context.log.info(f"{version}: {parent} has no {tag} chains to inherit; sampling every problem")
        return [], [], {"parent": parent, "inherited_problems": 0}
    chains, _, report = inherit_chains(
        read_records(ChainOfThought, parent_path),
        rows,
        lambda p: student.prompt_for(p.statement, examples),
        **config.sampling(),
        few_shot=len(examples),
    )
    seqs = usable_captured(layout, tag, parent, chains, settings_of(student.spec)) if chains else {}
    report = {"parent": parent, **report, "inherited_captured_latents": len(seqs)}
    context.log.info(f"{version}: inherited from {parent}: {report}")
    return chains, [seqs[c.cot_id] for c in chains if c.cot_id in seqs], report


@dg.asset(
    partitions_def=llm_x_version,
    deps=[student_chains, dg.AssetDep("gold_cots", partition_mapping=by_version)],
    group_name="student",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch", "safetensors"},
    check_specs=[dg.AssetCheckSpec("latents_finite_and_registered_width", asset="latents")],
    description="Step latents (mean-pooled hidden states of one layer) of gold and student chains.",
)
def latents(
    context: dg.AssetExecutionContext,
    config: LatentsConfig,
    storage: StorageResource,
    student_llm: StudentLLMResource,
    duckdb: DuckDBResource,
):
    layout, meta, problems_bad = storage.layout(), {}, []
    store = LatentStore(layout)
    try:
        extraction_chunk(config.shard_size)  # validates the shard size
    except ValueError as e:
        raise dg.Failure(f"latents config: {e}") from None
    if config.workers < 1:
        raise dg.Failure(f"latents config: workers must be >= 1, got {config.workers}")
    for key in context.partition_keys:
        version, tag = split_key(key)
        spec = student_llm.spec(tag)
        shards = _extract_resumable(context, config, store, student_llm, spec, version)
        seqs = store.read(tag, version)
        reused = shards.pop("captured_sequences") + shards["inherited_sequences"]
        hidden = spec.hidden_size or student_llm.load(tag).hidden_size
        width = pooled_width(hidden, spec.pooling)
        finite = all(bool(np.isfinite(s.H).all()) for s in seqs)
        wrong = sorted({s.hidden_size for s in seqs} - {width})
        if not finite or wrong:
            problems_bad.append(f"{key}: finite={finite}, widths {wrong} != registered {width}")
        meta[str(key)] = {
            **store.stats(tag, version),
            "hidden_size": width,
            "layer_idx": seqs[0].layer_idx,
            "pooling": spec.pooling,
            "question_pooling": spec.question_pooling,
            "extraction_workers": config.workers,
            **shards,
            "captured_sequences": reused - shards["inherited_sequences"],  # committed from sampling
            "teacher_forced_sequences": len(seqs) - reused,
        }
    build_index(layout, duckdb.database)  # SQL views over every dataset, chain and latent file
    with duckdb.get_connection() as con:
        by_llm = con.execute(
            "SELECT llm_tag, dataset_version, split, is_valid, count(*) AS n FROM latents GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    only = next(iter(meta.values())) if len(meta) == 1 else {}
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in only.items() if isinstance(v, int | float | str)},
            "index_by_llm": md_table(
                [dict(zip(("llm", "version", "split", "valid", "n"), r, strict=True)) for r in by_llm]
            ),
            "partitions": md_table([{"partition": k, **v} for k, v in meta.items()]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="latents_finite_and_registered_width",
                passed=not problems_bad,
                metadata={"problems": "; ".join(problems_bad) or "none"},
            )
        ],
    )


def _extract_resumable(context, config: LatentsConfig, store: LatentStore, student_llm, spec, version: str) -> dict:
    """Extract the partition's shards into its resumable staging folder and swap the set in (one commit).

    Shards that an interrupted run of the same inputs committed there are kept (rjepa_core.llm.resume); the
    others are extracted here (workers == 1) or by `config.workers` processes side by side. Student chains
    whose latents were captured while sampling are committed as they are (no second forward).
    """
    layout, tag = store.layout, spec.llm_tag
    problems, cots = partition_inputs(layout, tag, version)
    plan = plan_shards(len(cots), config.shard_size)
    fingerprint = inputs_fingerprint(layout, spec, version, config.shard_size, student_llm.device)
    try:
        reusable = ({}, 0) if config.teacher_forced else reusable_latents(layout, spec, version, cots, problems)
        captured, inherited = reusable  # the parent's committed latents and those captured while sampling
        with resumable_staging(layout, tag, version, fingerprint) as staging:
            kept = staged_shards(staging, plan)
            if kept:
                context.log.info(
                    f"resuming {tag}/{version}: {len(kept)} of {len(plan)} shard(s) committed by an interrupted "
                    f"run are intact and kept; extracting the other {len(plan) - len(kept)}"
                )
            if config.workers == 1:
                student = student_llm.load(tag)
                log = context.log.info
                extract_shards(
                    student, problems, cots, range(len(plan)), config.shard_size, staging, log=log, captured=captured
                )
                ran = 1
            else:
                kw = dict(shard_size=config.shard_size, device=student_llm.device, threads=config.worker_threads)
                kw.update(layout=layout, spec=spec, version=version, folder=staging, log=context.log.info)
                ranges = run_workers(config.workers, teacher_forced=config.teacher_forced, **kw)
                ran = len(ranges)
            clear_latent_provenance(layout, tag, version)
            store.commit_staged(tag, version, staging, [len(r) for r in plan])
        write_latent_provenance(layout, spec, version, problems, cots)
        # committed: drop what is left of the staging folder, and for object storage its staged units in the bucket
        discard_staging(layout, staging)
    except RuntimeError as e:
        raise dg.Failure(
            f"extraction of {tag}/{version} failed (the previous set is kept, and so are the shards committed so "
            f"far: re-materialize to extract only the rest): {e}"
        ) from e
    context.log.info(f"{len(plan)} shard(s) of {tag}/{version} committed ({len(kept)} kept, {ran} process(es))")
    return {
        "shards_total": len(plan),
        "shards_kept": len(kept),
        "shards_extracted": len(plan) - len(kept),
        "captured_sequences": len(captured) - inherited,
        "inherited_sequences": inherited,  # the parent version's committed latents of the same chains
    }

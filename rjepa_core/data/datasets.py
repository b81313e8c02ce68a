"""Versioned, cumulative datasets (SPEC §4): `configs/datasets/<version>.yaml` → problems + gold chains.

A version names its sources and, optionally, a parent version; `v2` holds everything `v1` holds
plus its own new problems (deduplicated by `problem_id`). The manifest records counts, sources and
validation rates per version.

    >>> cfg = load_dataset_config("configs/datasets/v1.yaml")
    >>> problems = build_problems(cfg, parent_problems=[])
    >>> cots = build_gold_cots(problems)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rjepa_core.config import read_yaml_mapping
from rjepa_core.data.sources import SourceSpec, clean_steps, load_source
from rjepa_core.llm.prompting import mark_examples
from rjepa_core.schemas import TRAIN_ONLY, ChainOfThought, Problem, split_of, stable_id

VERSION_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class DatasetConfig:
    version: str  # partition key, e.g. "v1"
    sources: list[SourceSpec]  # where new problems come from
    parent: str | None = None  # earlier version this one extends (cumulative)
    description: str = ""  # shown in the Dagster UI
    val_frac: float = 0.1  # share of problems in the validation split
    test_frac: float = 0.2  # share of problems in the test split
    teachers: list[str] = field(default_factory=list)  # teacher names (TEACHER_<NAME>_*) that add data
    teacher_problems: int = 0  # how many problems to ask the teachers for
    teacher_budget_usd: float = 0.0  # hard spend cap for the teacher job of this version
    teacher_domain: str = "math"  # domain of teacher-generated problems
    teacher_subdomain: str = "word problems"  # topic asked of the teachers
    teacher_difficulty: str = "medium"  # easy | medium | hard
    teacher_chains: int = 2  # chains asked of each teacher per problem
    few_shot: int = 0  # worked examples (train-split gold chains) shown to the student before each problem
    feedback_until: str | None = None  # ISO time: accepted user feedback logged up to it is in this version
    # (written by the feedback sensor; a child without it inherits its parent's, see `feedback_cutoff`)

    def __post_init__(self) -> None:
        if not VERSION_RE.match(self.version):
            raise ValueError(f"dataset version {self.version!r} may only use letters, digits, '.', '_' and '-'")
        if self.parent == self.version:
            raise ValueError(f"dataset version {self.version} cannot be its own parent")
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise ValueError("val_frac and test_frac must be in [0, 1) and sum to less than 1")
        if not isinstance(self.few_shot, int) or not 0 <= self.few_shot <= 8:
            raise ValueError(f"few_shot must be an integer from 0 to 8, got {self.few_shot!r}")
        if self.feedback_until is not None:
            try:
                when = datetime.fromisoformat(str(self.feedback_until))
            except ValueError:
                raise ValueError(
                    f"feedback_until must be an ISO time such as 2026-12-07T02:00:00+00:00, got {self.feedback_until!r}"
                ) from None
            if when.tzinfo is None:
                raise ValueError(f"feedback_until {self.feedback_until!r} needs a time zone (e.g. +00:00)")
            self.feedback_until = when.isoformat()


def load_dataset_config(path: str | Path) -> DatasetConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, "`version:` and `sources:`")
    raw.setdefault("version", path.stem)
    if raw["version"] != path.stem:
        raise ValueError(f"{path}: version {raw['version']!r} must match the file name {path.stem!r}")
    try:
        sources = [SourceSpec(**s) for s in raw.pop("sources", []) or []]
        return DatasetConfig(sources=sources, **raw)
    except TypeError as e:
        raise ValueError(f"{path}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_dataset_configs(directory: str | Path = "configs/datasets") -> dict[str, DatasetConfig]:
    out = {}
    for p in sorted(Path(directory).glob("*.yaml")):
        cfg = load_dataset_config(p)
        out[cfg.version] = cfg
    return out


def feedback_cutoff(configs: dict[str, DatasetConfig], version: str) -> str | None:
    """The feedback cutoff of `version`: its own `feedback_until`, else its nearest ancestor's (None: no feedback).

    A hand-written child of a feedback version keeps its parent's feedback, rebuilt from the log like the parent's.
    """
    seen: set[str] = set()
    v: str | None = version
    while v is not None and v in configs and v not in seen:
        seen.add(v)
        if configs[v].feedback_until:
            return configs[v].feedback_until
        v = configs[v].parent
    return None


def build_problems(
    cfg: DatasetConfig, parent_problems: list[Problem], extra: list[Problem] | None = None
) -> list[Problem]:
    """Parent problems, `extra` ones (teachers) and this version's sources, deduplicated, with splits."""
    seen = {p.problem_id: p for p in parent_problems}
    for p in extra or []:
        if p.problem_id not in seen:
            p.split = split_of(p.problem_id, cfg.val_frac, cfg.test_frac)
            p.meta = {**p.meta, "dataset_version": cfg.version}
            seen[p.problem_id] = p
    for spec in cfg.sources:
        if spec.train_only or spec.split:
            continue
        for item in load_source(spec):
            p = item.problem
            if p.problem_id in seen:
                continue
            p.split = split_of(p.problem_id, cfg.val_frac, cfg.test_frac)
            p.meta = {**p.meta, "dataset_version": cfg.version}
            if item.gold_steps:
                p.meta["gold_steps"] = item.gold_steps
            seen[p.problem_id] = p
    # forced-split sources, then train-only ones, so neither displaces a hash-split problem; an item whose gold
    # computation repeats another problem's (the same sum worded otherwise) would leak it across splits
    computations = {_computation(p.meta.get("gold_steps")) for p in seen.values()} - {None}
    forced = [s for s in cfg.sources if s.split] + [s for s in cfg.sources if s.train_only]
    for spec in forced:
        for item in load_source(spec):
            p, how = item.problem, _computation(item.gold_steps)
            if p.problem_id in seen or (how is None and spec.train_only) or (how is not None and how in computations):
                continue  # a train-only item is its gold chain: without one it has nothing to add
            p.split = spec.split or "train"
            p.meta = {**p.meta, "dataset_version": cfg.version}
            if how is not None:
                computations.add(how)
                p.meta["gold_steps"] = item.gold_steps
            if spec.train_only:
                p.meta[TRAIN_ONLY] = True
            seen[p.problem_id] = p
    out = list(seen.values())
    mark_examples(out, cfg.few_shot)  # this version's prompt examples (parents' marks are cleared)
    return out


def _computation(gold_steps: list[str] | None) -> tuple[str, ...] | None:
    """A gold chain's steps without whitespace: two problems with the same computation share it."""
    return tuple("".join(str(x).split()) for x in gold_steps) if gold_steps else None


def build_gold_cots(problems: list[Problem], validate=None) -> list[ChainOfThought]:
    """Gold chains from each problem's rationale; `validate(problem, chain) -> chain` sets validity."""
    if validate is None:
        from rjepa_core.validators.gold import validate_chain as validate
    cots = []
    for p in problems:
        raw = p.meta.get("gold_steps")
        if not raw:
            continue
        steps = clean_steps(raw)
        if not steps:
            continue
        chain = ChainOfThought(
            cot_id=stable_id("gold", p.problem_id),
            problem_id=p.problem_id,
            steps=steps,
            final_answer=p.answer_gold,
            is_valid=False,
            origin="gold",
            meta={"raw_steps": raw},
        )
        cots.append(validate(p, chain))
    return cots


def manifest(cfg: DatasetConfig, problems: list[Problem], cots: list[ChainOfThought]) -> dict[str, Any]:
    valid = sum(c.is_valid for c in cots)
    return {
        "version": cfg.version,
        "parent": cfg.parent,
        "description": cfg.description,
        "created_at": datetime.now(UTC).isoformat(),
        "num_problems": len(problems),
        "num_train_only_problems": sum(p.train_only for p in problems),
        "num_cots": len(cots),
        "num_valid_cots": valid,
        "validation_rate": round(valid / len(cots), 4) if cots else None,
        "by_source": dict(Counter(p.source for p in problems)),
        "by_split": dict(Counter(p.split for p in problems)),
        "by_domain": dict(Counter(p.domain for p in problems)),
        "invalid_reasons": dict(Counter(c.validation_reason for c in cots if not c.is_valid)),
        "sources": [s.__dict__ for s in cfg.sources],
        "feedback_until": cfg.feedback_until,
    }

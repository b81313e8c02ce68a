"""Data contracts (SPEC §4): problems, chains of thought and per-LLM latent sequences.

Each contract is a pydantic model with a matching pyarrow schema, so a list of records
round-trips through parquet without losing a field:

    >>> p = Problem.create(domain="math", source="user", statement="2+2?", answer_gold="4")
    >>> write_records([p], "/tmp/problems.parquet")          # atomic (temp + rename)
    >>> read_records(Problem, "/tmp/problems.parquet")[0] == p
    True

`meta` dictionaries are stored as JSON text so the parquet schema stays fixed whatever they hold.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rjepa_core.io import atomic_path

SPLITS = ("train", "val", "test")
TRAIN_ONLY = "train_only"  # Problem.meta key: the problem comes from a train_only source (see data.sources)


def stable_id(*parts: str, length: int = 16) -> str:
    """Hex digest of the parts, stable across runs and machines."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return h.hexdigest()[:length]


def split_of(problem_id: str, val_frac: float = 0.1, test_frac: float = 0.2) -> str:
    """Deterministic train/val/test split by problem (never by chain)."""
    u = int(hashlib.sha256(("split:" + problem_id).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
    ARROW_SCHEMA: ClassVar[pa.Schema]
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("meta",)

    def to_row(self) -> dict[str, Any]:
        row = self.model_dump()
        for f in self.JSON_FIELDS:
            row[f] = json.dumps(row[f], sort_keys=True, default=str)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]):
        row = dict(row)
        for f in cls.JSON_FIELDS:
            if isinstance(row.get(f), str):
                row[f] = json.loads(row[f])
        return cls(**row)


class Problem(_Record):
    problem_id: str = Field(description="stable hash of source + statement")
    domain: str = Field(description="math, code, logic, ...")
    subdomain: str = ""
    source: str = Field(description="gsm8k, reasoning_gym:<task>, teacher:<model>, user, ...")
    difficulty: str = "unknown"
    statement: str
    answer_gold: str
    split: str = "train"
    meta: dict[str, Any] = Field(default_factory=dict)

    ARROW_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("problem_id", pa.string()),
            ("domain", pa.string()),
            ("subdomain", pa.string()),
            ("source", pa.string()),
            ("difficulty", pa.string()),
            ("statement", pa.string()),
            ("answer_gold", pa.string()),
            ("split", pa.string()),
            ("meta", pa.string()),
        ]
    )

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if v not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {v!r}")
        return v

    @property
    def train_only(self) -> bool:
        """From a `train_only` source: gold training data, never sampled, shown as an example nor evaluated."""
        return bool((self.meta or {}).get(TRAIN_ONLY))

    @classmethod
    def create(cls, *, source: str, statement: str, **kw: Any) -> Problem:
        pid = stable_id(source, statement)
        kw.setdefault("split", split_of(pid))
        return cls(problem_id=pid, source=source, statement=statement, **kw)


class ChainOfThought(_Record):
    cot_id: str
    problem_id: str
    steps: list[str]
    final_answer: str
    is_valid: bool
    validation_reason: str = ""
    origin: str = Field(description="gold | teacher:<model> | student:<llm_tag> | user")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    logprob: float | None = Field(default=None, description="sum of token log-probs (sampled chains)")
    meta: dict[str, Any] = Field(default_factory=dict)

    ARROW_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("cot_id", pa.string()),
            ("problem_id", pa.string()),
            ("steps", pa.list_(pa.string())),
            ("final_answer", pa.string()),
            ("is_valid", pa.bool_()),
            ("validation_reason", pa.string()),
            ("origin", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("logprob", pa.float64()),
            ("meta", pa.string()),
        ]
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a chain of thought needs at least one step")
        return v

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]


class LatentSequence(_Record):
    """Latents of one chain for one LLM. `H` lives in the shard's safetensors, not in parquet."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    JSON_FIELDS: ClassVar[tuple[str, ...]] = ()

    cot_id: str
    problem_id: str
    llm_tag: str
    layer_idx: int
    hidden_size: int
    num_steps: int
    step_spans: list[tuple[int, int]] = Field(description="token [start, end) per step")
    token_ids: list[int]
    domain: str = "math"
    is_valid: bool = True
    split: str = "train"
    origin: str = ""
    H: np.ndarray | None = Field(default=None, exclude=True, repr=False)
    # (hidden_size,) the layer's state at the token before the first step (it has read the whole prompt);
    # stored beside H in the shard's safetensors; None for latents extracted without it.
    Q: np.ndarray | None = Field(default=None, exclude=True, repr=False)

    ARROW_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("cot_id", pa.string()),
            ("problem_id", pa.string()),
            ("llm_tag", pa.string()),
            ("layer_idx", pa.int32()),
            ("hidden_size", pa.int32()),
            ("num_steps", pa.int32()),
            ("step_spans", pa.list_(pa.list_(pa.int32(), 2))),
            ("token_ids", pa.list_(pa.int32())),
            ("domain", pa.string()),
            ("is_valid", pa.bool_()),
            ("split", pa.string()),
            ("origin", pa.string()),
        ]
    )

    def check(self) -> LatentSequence:
        """Raise if H disagrees with the declared shape; return self."""
        if self.H is None:
            raise ValueError(f"latent sequence {self.cot_id} has no tensor H")
        if self.H.shape != (self.num_steps, self.hidden_size):
            raise ValueError(
                f"latent sequence {self.cot_id}: H has shape {self.H.shape}, expected "
                f"({self.num_steps}, {self.hidden_size})"
            )
        if len(self.step_spans) != self.num_steps:
            raise ValueError(f"latent sequence {self.cot_id}: {len(self.step_spans)} spans for {self.num_steps} steps")
        if self.Q is not None and self.Q.shape != (self.hidden_size,):
            raise ValueError(
                f"latent sequence {self.cot_id}: question latent Q has shape {self.Q.shape}, "
                f"expected ({self.hidden_size},)"
            )
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatentSequence):
            return NotImplemented

        def same(a, b) -> bool:
            return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))

        return self.model_dump() == other.model_dump() and same(self.H, other.H) and same(self.Q, other.Q)


def distinct_chains(seqs: list[LatentSequence]) -> list[LatentSequence]:
    """One sequence per distinct chain of a problem: repeats of the same tokens (a student sampling the same
    chain several times, or writing the gold one) are dropped, gold first kept; the order is unchanged.

    A repeated chain adds no information to train on but weighs its problem more: the problems the
    student finds easy, where it samples the same right chain K times, would dominate the targets.
    """
    seen, keep = set(), set()
    for i in sorted(range(len(seqs)), key=lambda i: seqs[i].origin != "gold"):  # stable: gold chains first
        key = (seqs[i].problem_id, seqs[i].is_valid, tuple(seqs[i].token_ids))
        if key not in seen:
            seen.add(key)
            keep.add(i)
    return [s for i, s in enumerate(seqs) if i in keep]


R = TypeVar("R", bound=_Record)


def records_to_table(records: list[_Record], cls: type[_Record] | None = None) -> pa.Table:
    cls = cls or type(records[0])
    rows = [r.to_row() for r in records]
    return pa.Table.from_pylist(rows, schema=cls.ARROW_SCHEMA)


def table_to_records(cls: type[R], table: pa.Table) -> list[R]:
    return [cls.from_row(row) for row in table.to_pylist()]


def write_records(records: list[_Record], path: str | Path, cls: type[_Record] | None = None) -> Path:
    """Write records to one parquet file atomically (an empty list needs `cls`)."""
    if not records and cls is None:
        raise ValueError("write_records needs `cls` to write an empty file")
    table = records_to_table(records, cls) if records else cls.ARROW_SCHEMA.empty_table()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_records(cls: type[R], path: str | Path) -> list[R]:
    return table_to_records(cls, pq.read_table(path, schema=cls.ARROW_SCHEMA))

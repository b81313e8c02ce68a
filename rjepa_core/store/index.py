"""DuckDB index over the store (SPEC §4): SQL by domain, difficulty, validity, LLM and version.

    >>> build_index(layout)
    >>> query(layout, "SELECT llm_tag, dataset_version, is_valid, count(*) AS n FROM latents GROUP BY ALL")

Views read the parquet files in place (no copy). `dataset_version` and `llm_tag` come from the
paths. Rebuilding writes a new database file and renames it over the old one, so readers opened
read-only keep working.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import duckdb

from rjepa_core.schemas import ChainOfThought, LatentSequence, Problem
from rjepa_core.store.layout import StorageLayout

# view name -> (glob relative to the root, record class, path parts -> columns)
VIEWS = {
    "problems": ("datasets/*/problems.parquet", Problem, {"dataset_version": -2}),
    "cots": ("datasets/*/cots.parquet", ChainOfThought, {"dataset_version": -2}),
    "student_chains": ("chains/*/*/student_chains.parquet", ChainOfThought, {"llm_tag": -3, "dataset_version": -2}),
    "latents": ("latents/*/*/shard-*.parquet", LatentSequence, {"llm_tag": -3, "dataset_version": -2}),
}


def _duck_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type):
        return "VARCHAR"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    return "VARCHAR[]" if pa.types.is_list(arrow_type) else "VARCHAR"


def _view_sql(layout: StorageLayout, name: str) -> str:
    pattern, cls, parts = VIEWS[name]
    files = [p for p in layout.root.glob(pattern) if not p.name.startswith(".")]
    path_cols = ", ".join(f"string_split(filename, '/')[{idx}] AS {col}" for col, idx in parts.items())
    if not files:  # an empty table with the right columns, so queries work before anything is built
        cols = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {f.name}" for f in cls.ARROW_SCHEMA)
        extra = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in parts)
        return f"CREATE VIEW {name} AS SELECT {cols}, {extra} WHERE false"
    listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in sorted(files))
    return (
        f"CREATE VIEW {name} AS SELECT * EXCLUDE (filename), {path_cols} "
        f"FROM read_parquet([{listing}], filename = true, union_by_name = true)"
    )


def build_index(layout: StorageLayout, db_path: str | Path | None = None) -> Path:
    """(Re)create the views; returns the database path."""
    db_path = Path(db_path or layout.index_db_path())
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    con = duckdb.connect(str(tmp))
    try:
        for name in VIEWS:
            con.execute(_view_sql(layout, name))
    finally:
        con.close()
    os.replace(tmp, db_path)
    return db_path


def query(layout: StorageLayout, sql: str, params: list[Any] | None = None, db_path: str | Path | None = None):
    """Run SQL against the index (built on first use); rows as dicts."""
    db_path = Path(db_path or layout.index_db_path())
    if not db_path.exists():
        build_index(layout, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def counts_by(layout: StorageLayout, view: str, *cols: str) -> list[dict[str, Any]]:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use one of {sorted(VIEWS)}")
    for c in cols:
        if not c.isidentifier():
            raise ValueError(f"bad column name {c!r}")
    group = ", ".join(cols)
    sql = f"SELECT {group}{',' if cols else ''} count(*) AS n FROM {view}"
    return query(layout, sql + (f" GROUP BY {group} ORDER BY {group}" if cols else ""))

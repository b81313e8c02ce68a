"""DuckDB index over the store (SPEC §4): SQL by domain, difficulty, validity, LLM and version.

    >>> build_index(layout)                                   # <root>/index.duckdb
    >>> query(layout, "SELECT llm_tag, dataset_version, domain, is_valid, count(*) AS n FROM latents GROUP BY ALL")
    >>> counts_by(layout, "problems", "dataset_version", "difficulty")
    >>> con = connect_objects(StorageLayout("s3://rjepa/prod"))  # the same views over the bucket itself

Views read the parquet files in place (no copy) through a glob, so shards committed after the build
show up without a rebuild; `dataset_version` and `llm_tag` come from the paths. Anything under a
hidden name (temp files, the `.v1.new` folder of a set being written) is filtered out on the file
name, which DuckDB applies before opening the files. A view whose glob matches nothing yet is an
empty table with the right columns; rebuild once files exist. Rebuilding writes a new database
file and renames it over the old one, and `query` opens it read-only, so concurrent readers never
see a half-built index or fight over a write lock.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa

from rjepa_core.schemas import ChainOfThought, Problem
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.shards import SHARD_SCHEMA


@dataclass(frozen=True)
class ViewSpec:
    glob: str  # files of the view, relative to the storage root
    schema: pa.Schema  # columns of the files (used for the empty table before any file exists)
    path_columns: dict[str, int]  # column -> path component counted from the end (-1 is the file name)


VIEWS: dict[str, ViewSpec] = {
    "problems": ViewSpec("datasets/*/problems.parquet", Problem.ARROW_SCHEMA, {"dataset_version": -2}),
    "cots": ViewSpec("datasets/*/cots.parquet", ChainOfThought.ARROW_SCHEMA, {"dataset_version": -2}),
    "student_chains": ViewSpec(
        "chains/*/*/student_chains.parquet", ChainOfThought.ARROW_SCHEMA, {"llm_tag": -3, "dataset_version": -2}
    ),
    "latents": ViewSpec("latents/*/*/shard-*.parquet", SHARD_SCHEMA, {"llm_tag": -3, "dataset_version": -2}),
}


def _matches_from_root(rel: str, glob: str) -> bool:
    """`rel` matches `glob` as a whole path from the root (PurePath.match alone matches from the right, so
    chains/<llm>/<v>/captured/latents/<llm>/<v>/shard-*.parquet would pass for the latents view)."""
    path, pattern = PurePosixPath(rel), PurePosixPath(glob)
    return len(path.parts) == len(pattern.parts) and path.match(glob)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _visible_files(layout: StorageLayout, spec: ViewSpec) -> list[Path]:
    root = layout.root
    return [p for p in root.glob(spec.glob) if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def _create_empty(con: duckdb.DuckDBPyConnection, name: str, spec: ViewSpec) -> None:
    """An empty table with the view's columns, for a view whose files do not exist yet."""
    empty = spec.schema.empty_table()
    for col in spec.path_columns:
        empty = empty.append_column(col, pa.array([], pa.string()))
    con.register("_empty", empty)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _empty")
    con.unregister("_empty")


def _create_view(con: duckdb.DuckDBPyConnection, layout: StorageLayout, name: str, spec: ViewSpec) -> int:
    """Create one view (or empty table); returns how many files it covers now."""
    files = _visible_files(layout, spec)
    if not files:
        _create_empty(con, name, spec)
        return 0
    root = str(layout.root)
    path_cols = ", ".join(f"string_split(filename, '/')[{idx}] AS {col}" for col, idx in spec.path_columns.items())
    # The filter is on the part below the root (the root itself may sit under a hidden folder).
    # No union_by_name: with it DuckDB opens every matched file before filtering, hidden ones included.
    con.execute(
        f"CREATE VIEW {name} AS SELECT * EXCLUDE (filename), {path_cols} "
        f"FROM read_parquet({_sql_str(root + '/' + spec.glob)}, filename = true) "
        f"WHERE strpos(filename[{len(root) + 1}:], '/.') = 0"
    )
    return len(files)


def build_index(layout: StorageLayout, db_path: str | Path | None = None) -> Path:
    """(Re)create every view in a fresh database file and rename it into place; returns its path."""
    db_path = Path(db_path or layout.index_db_path())
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        con = duckdb.connect(str(tmp))
        try:
            for name, spec in VIEWS.items():
                _create_view(con, layout, name, spec)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, db_path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return db_path


def _run(db_path: Path, sql: str, params: list[Any] | dict[str, Any] | None) -> list[dict[str, Any]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def query(
    layout: StorageLayout, sql: str, params: list[Any] | dict[str, Any] | None = None, db_path: str | Path | None = None
) -> list[dict[str, Any]]:
    """Run SQL against the index, read-only (built on first use); rows as dicts."""
    db_path = Path(db_path or layout.index_db_path())
    if not db_path.exists():
        build_index(layout, db_path)
    try:
        return _run(db_path, sql, params)
    except duckdb.IOException as e:
        if "No files found" not in str(e):
            raise
    # Every file of a view was removed since the build: rebuild (that view becomes empty) and retry once.
    build_index(layout, db_path)
    return _run(db_path, sql, params)


def connect_objects(layout: StorageLayout) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the index's views read straight from the bucket of an s3:// layout.

    No httpfs extension: the layout's s3fs filesystem is registered with DuckDB (`register_filesystem`),
    and each view reads the parquet objects the current manifests name (published, hence complete,
    files only). Path columns come from the object key `.rjepa-objects/<unit>/<sha256>/<name>`.
    """
    if layout.remote is None:
        raise ValueError(f"{layout.uri} is local storage: use query()/build_index() (connect_objects is for s3://)")
    files = layout.remote.published_files()
    con = duckdb.connect()
    con.register_filesystem(layout.remote.fs)
    for name, spec in VIEWS.items():
        urls = [url for rel, url in sorted(files.items()) if _matches_from_root(rel, spec.glob)]
        if not urls:
            _create_empty(con, name, spec)
            continue
        # one more component than on disk: the sha256 folder between the unit and the file name
        cols = ", ".join(f"string_split(filename, '/')[{idx - 1}] AS {col}" for col, idx in spec.path_columns.items())
        listing = ", ".join(_sql_str(u) for u in urls)
        source = f"read_parquet([{listing}], filename = true)"
        con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (filename), {cols} FROM {source}")
    return con


def counts_by(layout: StorageLayout, view: str, *cols: str, db_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Row counts of a view grouped by `cols` (e.g. "llm_tag", "is_valid"), ordered by them; key `n`."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use one of {sorted(VIEWS)}")
    for c in cols:
        if not c.isidentifier():
            raise ValueError(f"column {c!r} is not a plain column name")
    group = ", ".join(cols)
    sql = f"SELECT {group}{', ' if cols else ''}count(*) AS n FROM {view}"
    if cols:
        sql += f" GROUP BY {group} ORDER BY {group}"
    return query(layout, sql, db_path=db_path)

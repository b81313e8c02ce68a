"""DuckDB index on a real database file over real parquet written by the store and write_records."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from rjepa_core.schemas import ChainOfThought, Problem, write_records
from rjepa_core.store.index import build_index, counts_by, query
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.core.store.factories import make_seqs


@pytest.fixture
def layout(tmp_path):
    return StorageLayout(tmp_path / "store")


def write_dataset(layout, version, statements):
    problems = [
        Problem.create(domain="math", source="t", statement=s, answer_gold="1", difficulty=("easy", "hard")[i % 2])
        for i, s in enumerate(statements)
    ]
    write_records(problems, layout.problems_path(version))
    cots = [
        ChainOfThought(
            cot_id=f"{version}-{i}",
            problem_id=p.problem_id,
            steps=["a", "b"],
            final_answer="1",
            is_valid=i % 2 == 0,
            origin="gold",
        )
        for i, p in enumerate(problems)
    ]
    write_records(cots, layout.cots_path(version))


def test_sql_by_llm_version_domain_validity(layout):
    store = LatentStore(layout)
    tiny, other = make_seqs(6), make_seqs(3, hidden=4, tag="other", seed=1)
    store.write("tiny", "v1", tiny, shard_size=4)
    store.write("other", "v2", other)
    write_dataset(layout, "v1", ["1?", "2?", "3?"])
    write_dataset(layout, "v2", ["1?", "2?", "3?", "4?"])
    db = build_index(layout)
    assert db == layout.index_db_path() and duckdb.connect(str(db), read_only=True).close() is None

    rows = query(
        layout,
        "SELECT llm_tag, dataset_version, domain, is_valid, count(*) AS n FROM latents GROUP BY ALL ORDER BY ALL",
    )
    want = {}
    for s in tiny + other:
        key = (s.llm_tag, "v1" if s.llm_tag == "tiny" else "v2", s.domain, s.is_valid)
        want[key] = want.get(key, 0) + 1
    assert rows == [
        {"llm_tag": k[0], "dataset_version": k[1], "domain": k[2], "is_valid": k[3], "n": n}
        for k, n in sorted(want.items())
    ]
    got = query(layout, "SELECT count(*) AS n FROM latents WHERE llm_tag = ? AND split = ?", ["tiny", "train"])
    assert got == [{"n": sum(s.split == "train" for s in tiny)}]
    spans = query(layout, "SELECT step_spans, row_offset FROM latents WHERE cot_id = ?", [tiny[5].cot_id])
    assert spans == [{"step_spans": [list(x) for x in tiny[5].step_spans], "row_offset": 1}]
    assert counts_by(layout, "problems", "dataset_version", "difficulty") == [
        {"dataset_version": "v1", "difficulty": "easy", "n": 2},
        {"dataset_version": "v1", "difficulty": "hard", "n": 1},
        {"dataset_version": "v2", "difficulty": "easy", "n": 2},
        {"dataset_version": "v2", "difficulty": "hard", "n": 2},
    ]
    assert counts_by(layout, "cots", "dataset_version", "is_valid") == [
        {"dataset_version": "v1", "is_valid": False, "n": 1},
        {"dataset_version": "v1", "is_valid": True, "n": 2},
        {"dataset_version": "v2", "is_valid": False, "n": 2},
        {"dataset_version": "v2", "is_valid": True, "n": 2},
    ]
    joined = query(
        layout,
        "SELECT c.dataset_version, count(*) AS n FROM cots c JOIN problems p USING (problem_id, dataset_version) "
        "WHERE p.difficulty = 'easy' AND c.is_valid GROUP BY 1 ORDER BY 1",
    )
    assert joined == [{"dataset_version": "v1", "n": 2}, {"dataset_version": "v2", "n": 2}]


def test_views_follow_the_files_and_skip_hidden_work(layout):
    store = LatentStore(layout)
    store.write("tiny", "v1", make_seqs(4), shard_size=2)
    build_index(layout)
    store.write("tiny", "v1", make_seqs(3, seed=1), append=True)  # committed after the build
    d = layout.latents_dir("tiny", "v1")
    shutil.copytree(d, d.parent / ".v1.new")  # a whole set being written: complete parquet files, hidden folder
    (d / ".shard-00099.parquet.abc.tmp").write_bytes((d / "shard-00000.parquet").read_bytes())
    assert query(layout, "SELECT dataset_version, count(*) AS n FROM latents GROUP BY ALL") == [
        {"dataset_version": "v1", "n": 7}
    ]


def test_empty_views_have_the_right_columns(layout):
    build_index(layout)
    assert counts_by(layout, "latents", "llm_tag") == [] and counts_by(layout, "student_chains") == [{"n": 0}]
    cols = {r["column_name"]: r["column_type"] for r in query(layout, "DESCRIBE latents")}
    assert cols["step_spans"] == "INTEGER[2][]" and cols["row_offset"] == "BIGINT" and cols["llm_tag"] == "VARCHAR"
    assert query(layout, "SELECT * FROM cots WHERE is_valid") == []


def test_queries_survive_rebuilds_and_removed_files(layout):
    store = LatentStore(layout)
    store.write("tiny", "v1", make_seqs(3))
    assert counts_by(layout, "latents") == [{"n": 3}]  # built on first use
    reader = duckdb.connect(str(layout.index_db_path()), read_only=True)  # a concurrent reader
    build_index(layout)  # renamed over the file the reader holds
    assert reader.execute("SELECT count(*) FROM latents").fetchone() == (3,)
    reader.close()
    shutil.rmtree(layout.root / "latents")
    assert counts_by(layout, "latents") == [{"n": 0}]  # rebuilt once the glob matched nothing
    assert not [p for p in layout.root.iterdir() if p.name.endswith((".tmp", ".wal"))]


def test_counts_by_refuses_unknown_views_and_odd_columns(layout):
    with pytest.raises(ValueError, match="unknown view"):
        counts_by(layout, "users")
    with pytest.raises(ValueError, match="plain column name"):
        counts_by(layout, "latents", "llm_tag; DROP VIEW latents")

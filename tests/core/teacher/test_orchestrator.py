"""Teacher jobs end to end against the fake server: problems, validated chains, labels, budget stop."""

from __future__ import annotations

import json

from rjepa_core.schemas import ChainOfThought, Problem, read_records, write_records
from rjepa_core.teacher.budget import BudgetTracker
from rjepa_core.teacher.client import TeacherClient
from rjepa_core.teacher.orchestrator import ProblemSpec, generate_chains, generate_problems, label_problems
from rjepa_core.teacher.settings import load_teachers


def _teachers(server, names=("alpha", "beta"), key="sk-unused", tmp_path=None, max_tokens=256):
    env = {}
    for n in names:
        env |= {f"TEACHER_{n.upper()}_BASE_URL": server.base_url, f"TEACHER_{n.upper()}_MODEL": f"model-{n}"}
        env |= {f"TEACHER_{n.upper()}_API_KEY": key, f"TEACHER_{n.upper()}_MAX_RETRIES": "3"}
        env[f"TEACHER_{n.upper()}_MAX_TOKENS"] = str(max_tokens)
    log = tmp_path / "teacher.jsonl" if tmp_path else None
    return [TeacherClient(s, log_path=log, backoff_base_s=0.01) for s in load_teachers(env).values()]


def test_generate_problems_round_robin(fake_server):
    problems, rep = generate_problems(
        _teachers(fake_server), ProblemSpec(domain="math", subdomain="addition", n=7, per_call=3)
    )
    assert len(problems) == 7 and rep["problems"] == 7 and rep["stopped_reason"] == "done"
    assert {p.source for p in problems} == {"teacher:model-alpha", "teacher:model-beta"}
    assert all(p.meta["template_id"] == "problem_generation@v1" and p.answer_gold for p in problems)
    assert len({p.problem_id for p in problems}) == 7


def test_budget_cap_stops_cleanly_and_keeps_paid_work(fake_server):
    budget = BudgetTracker(cap_usd=1.0, prices={"default": (1000.0, 1000.0)})  # $0.001 per token
    spec = ProblemSpec(domain="math", subdomain="addition", n=100, per_call=2)
    problems, rep = generate_problems(_teachers(fake_server, names=("alpha",), max_tokens=100), spec, budget)
    assert rep["stopped_on_budget"] and rep["stopped_reason"].startswith("budget cap reached")
    assert 0 < rep["spent_usd"] <= 1.0
    assert rep["calls"] == len(fake_server.requests)  # every request made was paid for
    assert len(problems) == 2 * len(fake_server.requests)  # and everything paid for is kept


def test_generate_chains_validates_and_keeps_negatives(fake_server):
    good = Problem.create(source="user", statement="What is 2 + 3?", domain="math", answer_gold="5")
    wrong_gold = Problem.create(source="user", statement="What is 4 + 4?", domain="math", answer_gold="9")
    no_gold = Problem.create(source="user", statement="What is 1 + 6?", domain="math", answer_gold="")
    fake_server.script = [{}, {}, {}, {"content": '{"steps": ["4 + 4 = 9"], "final_answer": "9"}'}]
    chains, rep = generate_chains(_teachers(fake_server), [good, wrong_gold, no_gold], chains_per_teacher=1)
    by = {p.problem_id: [c for c in chains if c.problem_id == p.problem_id] for p in (good, wrong_gold, no_gold)}
    assert all(c.is_valid and c.meta["check"] == "passed" for c in by[good.problem_id])
    bad = by[wrong_gold.problem_id]
    assert not any(c.is_valid for c in bad)
    assert any("step 0 arithmetic is wrong" in c.validation_reason for c in bad)
    assert any("differs from the gold answer" in c.validation_reason for c in bad)
    assert all(c.is_valid and c.meta["check"] == "agreement" for c in by[no_gold.problem_id])
    assert rep["chains"] == 6 and rep["valid"] == 4 and rep["valid_rate"] == round(4 / 6, 4)
    assert {c.origin for c in chains} == {"teacher:model-alpha", "teacher:model-beta"}


def test_label_problems(fake_server):
    p = Problem.create(source="user", statement="What is 2 + 3?", domain="math", answer_gold="5")
    out, rep = label_problems(_teachers(fake_server), [p], subdomains=["addition", "fractions"])
    assert out[0].subdomain == "addition" and out[0].difficulty == "easy"
    assert out[0].meta["notions"] == ["addition", "integers"] and rep["labelled"] == 1
    assert out[0].problem_id == p.problem_id


def test_api_key_never_leaves_the_http_header(fake_server, tmp_path, caplog):
    key = "sk-test-SECRET-7f3a9c2e1b"
    caplog.set_level("DEBUG")
    teachers = _teachers(fake_server, key=key, tmp_path=tmp_path)
    fake_server.script = [{"status": 429, "retry_after": "0"}, {"status": 500}, {"content": "not json"}]
    problems, rep1 = generate_problems(teachers, ProblemSpec(domain="math", subdomain="addition", n=3, per_call=3))
    chains, rep2 = generate_chains(teachers, problems[:1], chains_per_teacher=1)
    write_records(problems, tmp_path / "problems.parquet")
    write_records(chains, tmp_path / "cots.parquet")
    (tmp_path / "report.json").write_text(json.dumps([rep1, rep2], default=str))
    # the key did reach the server, as a bearer token
    assert all(r["headers"]["authorization"] == f"Bearer {key}" for r in fake_server.requests)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert (tmp_path / "teacher.jsonl") in files and (tmp_path / "teacher.jsonl").stat().st_size > 0
    for f in files:
        assert key.encode() not in f.read_bytes(), f
    assert key not in caplog.text
    log_text = (tmp_path / "teacher.jsonl").read_text()
    assert "scripted 429" in log_text and "scripted 500" in log_text  # errors were logged, without the key
    assert {"rjepa.teacher", "openai._base_client"} <= {r.name for r in caplog.records}  # debug logs were captured
    assert key not in json.dumps([rep1, rep2], default=str)
    texts = (
        [repr(t) for t in teachers]
        + [repr(t.settings) for t in teachers]
        + [t.settings.model_dump_json() for t in teachers]
    )
    texts += [p.model_dump_json() for p in read_records(Problem, tmp_path / "problems.parquet")]
    texts += [c.model_dump_json() for c in read_records(ChainOfThought, tmp_path / "cots.parquet")]
    assert not any(key in t for t in texts)

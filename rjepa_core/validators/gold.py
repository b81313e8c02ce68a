"""Gold decision: a chain is gold when its domain's check passes, or, where no check applies,
when at least two chains of the same problem agree on the answer. Failures stay as negatives.

    >>> from rjepa_core.schemas import ChainOfThought, Problem
    >>> p = Problem.create(domain="math", source="user", statement="2+3?", answer_gold="5")
    >>> c = ChainOfThought(cot_id="c1", problem_id=p.problem_id, steps=["2 + 3 = 5"], final_answer="5",
    ...                    is_valid=False, origin="user")
    >>> validate_chain(p, c).is_valid
    True

Checks per domain: math = the answer equals `answer_gold` (numeric/symbolic) and no step holds a
wrong `<<expr=value>>` or `a op b = c`; code = the HumanEval tests in `problem.meta` (`test`,
`entry_point`, optional `prompt`) pass in the sandbox on `final_answer`; logic = same truth
verdict or an equivalent formula. Each validated chain gets `meta["check"]` = passed | failed |
none and a `validation_reason` that says why.
"""

from __future__ import annotations

from collections import defaultdict

from rjepa_core.schemas import ChainOfThought, Problem
from rjepa_core.validators.logic import logic_answers_equal, truth_value
from rjepa_core.validators.math import answers_equal, normalize_answer
from rjepa_core.validators.steps import check_step


def _math(problem: Problem, chain: ChainOfThought) -> tuple[str, str]:
    for i, step in enumerate(chain.steps):
        c = check_step(step)
        if not c.ok:
            return "failed", f"step {i} arithmetic is wrong: {c.first_error}"
    if not problem.answer_gold.strip():
        return "none", "no gold answer; steps' arithmetic is consistent"
    if answers_equal(chain.final_answer, problem.answer_gold):
        return "passed", f"answer {normalize_answer(chain.final_answer)} equals the gold answer"
    return "failed", f"answer {chain.final_answer!r} differs from the gold answer {problem.answer_gold!r}"


def _code(problem: Problem, chain: ChainOfThought, timeout: float) -> tuple[str, str]:
    from rjepa_core.validators.code import run_humaneval

    if "test" not in problem.meta or "entry_point" not in problem.meta:
        return "none", "no tests in problem.meta (needs 'test' and 'entry_point')"
    meta = problem.meta
    he = {"prompt": meta.get("prompt", ""), "test": meta["test"], "entry_point": meta["entry_point"]}
    r = run_humaneval(he, chain.final_answer, timeout=timeout)
    if r.passed:
        return "passed", "tests passed in the sandbox"
    detail = r.killed_reason or (r.stderr.strip().splitlines() or ["exit status " + str(r.returncode)])[-1]
    return "failed", f"tests failed: {detail[:300]}"


def _logic(problem: Problem, chain: ChainOfThought) -> tuple[str, str]:
    if not problem.answer_gold.strip():
        return "none", "no gold answer"
    if logic_answers_equal(chain.final_answer, problem.answer_gold):
        return "passed", "answer agrees with the gold answer (truth value or equivalent formula)"
    return "failed", f"answer {chain.final_answer!r} disagrees with the gold answer {problem.answer_gold!r}"


def _other(problem: Problem, chain: ChainOfThought) -> tuple[str, str]:
    if not problem.answer_gold.strip():
        return "none", "no gold answer"
    if _key(problem, chain.final_answer) == _key(problem, problem.answer_gold):
        return "passed", "answer equals the gold answer"
    return "failed", f"answer {chain.final_answer!r} differs from the gold answer {problem.answer_gold!r}"


def validate_chain(problem: Problem, chain: ChainOfThought, code_timeout: float = 5.0) -> ChainOfThought:
    """A copy of `chain` with is_valid, validation_reason and meta["check"] set by the domain's check."""
    if chain.problem_id != problem.problem_id:
        raise ValueError(f"chain {chain.cot_id} belongs to problem {chain.problem_id}, not {problem.problem_id}")
    if problem.domain == "math":
        status, reason = _math(problem, chain)
    elif problem.domain == "code":
        status, reason = _code(problem, chain, code_timeout)
    elif problem.domain == "logic":
        status, reason = _logic(problem, chain)
    else:
        status, reason = _other(problem, chain)
    return chain.model_copy(
        update={"is_valid": status == "passed", "validation_reason": reason, "meta": {**chain.meta, "check": status}}
    )


def _key(problem: Problem, answer: str) -> str:
    """Agreement key: canonical number for math, truth value for logic, folded text otherwise."""
    if problem.domain == "math":
        return normalize_answer(answer) or ""
    if problem.domain == "logic" and (tv := truth_value(answer)) is not None:
        return str(tv)
    return " ".join(answer.lower().split())


def decide_gold(problem: Problem, chains: list[ChainOfThought], min_agree: int = 2) -> list[ChainOfThought]:
    """Validate every chain; where no check applies, chains whose answers agree (≥ `min_agree`) are gold."""
    validated = [validate_chain(problem, c) for c in chains]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(validated):
        if c.meta["check"] == "none" and c.final_answer.strip():
            groups[_key(problem, c.final_answer)].append(i)
    out = list(validated)
    for i, c in enumerate(validated):
        if c.meta["check"] != "none":
            continue
        group = groups.get(_key(problem, c.final_answer), []) if c.final_answer.strip() else []
        if len(group) >= min_agree:
            reason = f"{len(group)} of {len(validated)} chains agree on this answer ({c.validation_reason})"
            meta = {**c.meta, "check": "agreement"}
            out[i] = c.model_copy(update={"is_valid": True, "validation_reason": reason, "meta": meta})
        else:
            reason = f"no check applies and fewer than {min_agree} chains agree ({c.validation_reason})"
            out[i] = c.model_copy(update={"is_valid": False, "validation_reason": reason})
    return out


def label_chain(problem: Problem, chain: ChainOfThought) -> ChainOfThought:
    """Set is_valid/validation_reason by checking the final answer (and locate the first wrong step)."""
    from rjepa_core.validators.steps import first_wrong_step

    if chain.final_answer in (None, ""):
        chain.is_valid, chain.validation_reason = False, "no final answer"
    elif answers_equal(chain.final_answer, problem.answer_gold):
        chain.is_valid, chain.validation_reason = True, "final answer matches gold"
    else:
        chain.is_valid = False
        chain.validation_reason = f"wrong final answer {chain.final_answer!r} (gold {problem.answer_gold!r})"
    if problem.domain == "math":
        chain.meta["first_wrong_step"] = first_wrong_step(chain.steps)
    return chain

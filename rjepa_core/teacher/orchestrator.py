"""Teacher jobs: generate problems, generate validated chains, label problems. Each returns the
records it made plus a report dict (spend, counts, validation rates, stop reason; never keys).

    >>> teachers = [TeacherClient(s) for s in load_teachers().values()]
    >>> budget = BudgetTracker(cap_usd=2.0)
    >>> problems, rep = generate_problems(teachers, ProblemSpec(domain="math", subdomain="percentages", n=20), budget)
    >>> chains, rep = generate_chains(teachers, problems, budget, chains_per_teacher=2)
    >>> rep["valid_rate"], rep["spent_usd"], rep["stopped_reason"]

Teachers take turns (round robin) for diversity. A job stops cleanly when the budget's next
call would cross the cap: what was paid for is returned and the report says why it stopped.
A call that still fails after its retries is counted in `errors` and the job goes on.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rjepa_core.schemas import ChainOfThought, Problem
from rjepa_core.teacher.budget import BudgetExceeded, BudgetTracker
from rjepa_core.teacher.client import TeacherClient
from rjepa_core.teacher.prompts import load_prompt
from rjepa_core.validators.gold import decide_gold

log = logging.getLogger("rjepa.teacher")

Teachers = Sequence[TeacherClient] | Mapping[str, TeacherClient]


@dataclass
class ProblemSpec:
    domain: str  # math, code, logic, ...
    subdomain: str  # topic asked for, e.g. "percentages"
    n: int = 10  # problems wanted (the job may return fewer if the budget or max_calls stops it)
    per_call: int = 5  # problems asked per request
    difficulty: str = "medium"  # easy | medium | hard, recorded on each Problem
    notions: list[str] = field(default_factory=list)  # notions the problems should exercise
    examples: list[str] = field(default_factory=list)  # style examples shown to the teacher
    max_calls: int | None = None  # hard stop on requests (default: 3x what n needs)


def _list(teachers: Teachers) -> list[TeacherClient]:
    out = list(teachers.values()) if isinstance(teachers, Mapping) else list(teachers)
    if not out:
        raise ValueError("no teachers: configure TEACHER_<NAME>_BASE_URL and TEACHER_<NAME>_MODEL")
    return out


def _report(budget: BudgetTracker, stopped: str, **counts) -> dict:
    return {**counts, **budget.report(), "stopped_reason": stopped}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def generate_problems(
    teachers: Teachers, spec: ProblemSpec, budget: BudgetTracker | None = None
) -> tuple[list[Problem], dict]:
    """Ask the teachers (in turn) for problems until `spec.n` distinct ones, the budget or max_calls."""
    clients, budget = _list(teachers), budget or BudgetTracker(cap_usd=None)
    template = load_prompt("problem_generation")
    max_calls = spec.max_calls or 3 * -(-spec.n // spec.per_call)
    problems: list[Problem] = []
    seen: set[str] = set()
    calls = errors = rejected = 0
    stopped = "done"
    for client in itertools.cycle(clients):
        if len(problems) >= spec.n:
            break
        if calls >= max_calls:
            stopped = f"max_calls ({max_calls}) reached with {len(problems)} of {spec.n} problems"
            break
        calls += 1
        messages = template.render(
            n=min(spec.per_call, spec.n - len(problems)),
            domain=spec.domain,
            subdomain=spec.subdomain,
            difficulty=spec.difficulty,
            notions=", ".join(spec.notions) or "any relevant",
            examples="\n".join(f"- {e}" for e in spec.examples) or "- (none)",
        )
        try:
            items, _ = client.chat_json(messages, expect=list, budget=budget, purpose="problems")
        except BudgetExceeded as e:
            stopped = str(e)
            break
        except Exception as e:  # retries exhausted or unrepairable JSON: one failed call must not end the job
            errors += 1
            log.warning("teacher %s: problem generation failed: %s", client.name, type(e).__name__)
            continue
        for item in items:
            statement = str(item.get("statement", "")).strip() if isinstance(item, dict) else ""
            answer = str(item.get("answer", "")).strip() if isinstance(item, dict) else ""
            if not statement or not answer or _norm(statement) in seen:
                rejected += 1
                continue
            seen.add(_norm(statement))
            notions = item.get("notions") if isinstance(item.get("notions"), list) else []
            meta = {"notions": [str(n) for n in notions], "template_id": template.template_id, "teacher": client.name}
            problems.append(
                Problem.create(
                    source=f"teacher:{client.model}",
                    statement=statement,
                    domain=spec.domain,
                    subdomain=spec.subdomain,
                    difficulty=spec.difficulty,
                    answer_gold=answer,
                    meta=meta,
                )
            )
            if len(problems) >= spec.n:
                break
    rep = _report(budget, stopped, problems=len(problems), requests=calls, errors=errors, rejected_items=rejected)
    rep["by_teacher"] = dict(Counter(p.meta["teacher"] for p in problems))
    return problems, rep


def _chain_from(item: object, problem: Problem, client: TeacherClient, template_id: str) -> ChainOfThought | None:
    if not isinstance(item, dict):
        return None
    steps = item.get("steps")
    if isinstance(steps, str):
        steps = [s for s in steps.splitlines() if s.strip()]
    if not isinstance(steps, list):
        return None
    steps = [str(s).strip() for s in steps if str(s).strip()]
    if not steps:
        return None
    return ChainOfThought(
        cot_id=ChainOfThought.new_id(),
        problem_id=problem.problem_id,
        steps=steps,
        final_answer=str(item.get("final_answer", "")).strip(),
        is_valid=False,
        origin=f"teacher:{client.model}",
        meta={"teacher": client.name, "template_id": template_id},
    )


def generate_chains(
    teachers: Teachers,
    problems: list[Problem],
    budget: BudgetTracker | None = None,
    chains_per_teacher: int = 2,
    style: str = "",
) -> tuple[list[ChainOfThought], dict]:
    """Ask every teacher for `chains_per_teacher` chains per problem, then validate (decide_gold)."""
    clients, budget = _list(teachers), budget or BudgetTracker(cap_usd=None)
    template = load_prompt("multi_cot")
    out: list[ChainOfThought] = []
    calls = errors = unparsed = 0
    stopped = "done"
    for problem in problems:
        chains: list[ChainOfThought] = []
        for client, _ in itertools.product(clients, range(chains_per_teacher)):
            messages = template.render(statement=problem.statement, domain=problem.domain, style=style)
            calls += 1
            try:
                item, _res = client.chat_json(messages, expect=dict, budget=budget, purpose="chains")
            except BudgetExceeded as e:
                stopped = str(e)
                break
            except Exception as e:  # retries exhausted or unrepairable JSON: count it and go on
                errors += 1
                log.warning("teacher %s: chain generation failed: %s", client.name, type(e).__name__)
                continue
            chain = _chain_from(item, problem, client, template.template_id)
            if chain is None:
                unparsed += 1
            else:
                chains.append(chain)
        if chains:
            out.extend(decide_gold(problem, chains))  # paid-for chains are kept even if the budget ran out
        if stopped != "done":
            break
    valid = sum(c.is_valid for c in out)
    checks = Counter(c.meta.get("check", "none") for c in out)
    rep = _report(budget, stopped, chains=len(out), valid=valid, requests=calls, errors=errors, unparsed=unparsed)
    rep["valid_rate"] = round(valid / len(out), 4) if out else 0.0
    rep["checks"] = dict(checks)
    rep["problems_with_gold"] = len({c.problem_id for c in out if c.is_valid})
    rep["by_teacher"] = {
        name: {"chains": n, "valid": sum(c.is_valid for c in out if c.meta["teacher"] == name)}
        for name, n in Counter(c.meta["teacher"] for c in out).items()
    }
    return out, rep


def label_problems(
    teachers: Teachers, problems: list[Problem], budget: BudgetTracker | None = None, subdomains: Sequence[str] = ()
) -> tuple[list[Problem], dict]:
    """Subdomain, notions (and difficulty when unknown) for each problem, teachers in turn."""
    clients, budget = _list(teachers), budget or BudgetTracker(cap_usd=None)
    template = load_prompt("labelling")
    out: list[Problem] = []
    labelled = errors = 0
    stopped = "done"
    for i, problem in enumerate(problems):
        client = clients[i % len(clients)]
        if stopped != "done":
            out.append(problem)  # unlabelled problems are returned unchanged
            continue
        messages = template.render(
            statement=problem.statement, domain=problem.domain, subdomains=", ".join(subdomains) or "(none yet)"
        )
        try:
            item, _ = client.chat_json(messages, expect=dict, budget=budget, purpose="labels")
        except BudgetExceeded as e:
            stopped = str(e)
            out.append(problem)
            continue
        except Exception as e:  # keep the problem as it was
            errors += 1
            log.warning("teacher %s: labelling failed: %s", client.name, type(e).__name__)
            out.append(problem)
            continue
        update: dict = {}
        if isinstance(sub := item.get("subdomain"), str) and sub.strip():
            update["subdomain"] = sub.strip()
        if problem.difficulty == "unknown" and item.get("difficulty") in ("easy", "medium", "hard"):
            update["difficulty"] = item["difficulty"]
        notions = item.get("notions") if isinstance(item.get("notions"), list) else []
        meta = {**problem.meta, "notions": [str(n) for n in notions][:5], "label_teacher": client.name}
        meta["label_template_id"] = template.template_id
        out.append(problem.model_copy(update={**update, "meta": meta}))
        labelled += 1
    return out, _report(budget, stopped, problems=len(problems), labelled=labelled, errors=errors)

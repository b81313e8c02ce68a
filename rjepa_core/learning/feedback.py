"""Feedback validation (SPEC F14): interaction-log records → accepted positives, negatives, rejections.

    >>> rec = {"interaction_id": "a1", "workspace": "default", "text_kept": True, "rating": "up",
    ...        "prompt": "What is 3 + 4?", "steps": ["3 + 4 = 7"], "final_answer": "7",
    ...        "jepa": {"score01": 0.9}, "created_at": "2026-12-07T01:00:00+00:00", "user_hash": "h"}
    >>> [v] = validate_records([rec], FeedbackPolicy(min_score01=0.5))
    >>> v.outcome, v.reason, v.checked
    ('accepted', 'thumbs up, score 0.900 >= 0.5, check passed', True)

A record is used only if its user consented and its workspace kept text (`text_kept`) and the
workspace is not opted out in the loop config (an opt-out applies to records written before it, too).
A thumbs-up is an **accepted positive** when the service's calibrated JEPA score (`jepa.score01`,
computed by the service when it logged the answer) is at least the threshold and the automatic check
passed: every `a op b = c` in the steps is right and, when the question states one arithmetic
expression, the final answer equals its value (sympy / exact fractions). A thumbs-down is a
**negative**: kept as an invalid chain (evaluation and hard negatives), never a training target.
Everything else is **rejected** with its reason. Code answers would need the code sandbox against
tests the user does not send, so they are never checkable here (`require_check` rejects them).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rjepa_core.learning.config import FeedbackPolicy
from rjepa_core.schemas import ChainOfThought, Problem, stable_id

ACCEPTED, NEGATIVE, REJECTED = "accepted", "negative", "rejected"
USER_SOURCE = "user"  # Problem.source and ChainOfThought.origin of everything built from feedback

# An arithmetic expression in a question: numbers joined by + - * / × ÷ (parentheses allowed).
_EXPR = re.compile(r"[(\s]*-?\d+(?:\.\d+)?(?:[\s)]*[-+*/×÷][\s(]*-?\d+(?:\.\d+)?)+[\s)]*")


@dataclass
class Validated:
    interaction_id: str  # the log record's id (links derived rows back to the log)
    outcome: str  # accepted | negative | rejected
    reason: str  # why (for rejections: the rule that failed)
    created_at: str  # the record's ISO time
    workspace: str  # the record's workspace
    user_hash: str | None  # salted hash of the user (for deletion), never the raw id
    checked: bool = False  # an automatic check ran (arithmetic in the steps or the question's value)
    score01: float | None = None  # the service's calibrated JEPA score of the answer
    expected: str | None = None  # the question's value, when it states an arithmetic expression
    pii: dict[str, int] = field(default_factory=dict)  # redactions the log made in this record
    prompt: str | None = None  # (PII-filtered) question, kept for accepted and negative rows only
    steps: list[str] = field(default_factory=list)  # the answer's steps, for accepted and negative rows
    final_answer: str | None = None  # the answer's final answer

    def to_row(self) -> dict[str, Any]:
        """The outcome without any text (what the asset's outcome table stores)."""
        d = asdict(self)
        for k in ("prompt", "steps", "final_answer"):
            d.pop(k)
        return d


def question_value(prompt: str) -> str | None:
    """The value of the one arithmetic expression a question states ("What is 3 + 4 * 2?" → "11"), else None."""
    from rjepa_core.data.arithmetic import format_number
    from rjepa_core.validators.steps import safe_eval

    found = [m.group(0).strip() for m in _EXPR.finditer(prompt)]
    if len(found) != 1:
        return None
    expr = found[0].replace("×", "*").replace("÷", "/")
    try:
        return format_number(safe_eval(expr))
    except (ValueError, ZeroDivisionError, SyntaxError):
        return None


def final_answer_of(rec: dict[str, Any]) -> str | None:
    from rjepa_core.segmentation import extract_final_answer

    if rec.get("final_answer"):
        return str(rec["final_answer"])
    for text in (rec.get("answer"), "\n".join(rec.get("steps") or [])):
        if text:
            found = extract_final_answer(str(text))
            if found:
                return found
    return None


def _check(steps: Sequence[str], prompt: str, final: str | None) -> tuple[bool, bool, str, str | None]:
    """(checked, passed, what, expected) of the automatic check."""
    from rjepa_core.validators.math import answers_equal
    from rjepa_core.validators.steps import check_step

    checked, expected = False, question_value(prompt)
    for i, s in enumerate(steps):
        c = check_step(s)
        checked = checked or c.checked > 0
        if not c.ok:
            return True, False, f"step {i + 1} is wrong: {c.first_error}", expected
    if expected is not None:
        if not answers_equal(final, expected):
            return True, False, f"final answer {final!r} is not the question's value {expected}", expected
        checked = True
    return checked, True, "check passed" if checked else "nothing checkable", expected


def validate_record(rec: dict[str, Any], policy: FeedbackPolicy) -> Validated:
    """The outcome of one interaction-log record under `policy`."""
    v = Validated(
        interaction_id=str(rec.get("interaction_id") or ""),
        outcome=REJECTED,
        reason="",
        created_at=str(rec.get("created_at") or ""),
        workspace=str(rec.get("workspace") or "default"),
        user_hash=rec.get("user_hash"),
        score01=(rec.get("jepa") or {}).get("score01"),
        pii={str(k): int(n) for k, n in (rec.get("pii_redactions") or {}).items()},
    )
    if v.workspace in policy.opted_out_workspaces:
        v.reason = "workspace opted out"
        return v
    if not rec.get("text_kept"):
        v.reason = "no consent (no text kept)"
        return v
    if rec.get("rating") not in ("up", "down"):
        v.reason = "no rating"
        return v
    prompt, steps = str(rec.get("prompt") or "").strip(), [str(s) for s in rec.get("steps") or [] if str(s).strip()]
    if not prompt or not steps:
        v.reason = "no question or no steps"
        return v
    final = final_answer_of(rec)
    v.checked, passed, what, v.expected = _check(steps, prompt, final)
    v.prompt, v.steps, v.final_answer = prompt, steps, final
    if rec["rating"] == "down":
        v.outcome, v.reason = NEGATIVE, f"thumbs down ({what})"
        return v
    if v.score01 is None:
        v.reason = "no JEPA score (the service could not score this answer)"
    elif v.score01 < policy.min_score01:
        v.reason = f"JEPA score {v.score01:.3f} below {policy.min_score01}"
    elif not passed:
        v.reason = f"check failed: {what}"
    elif not v.checked and policy.require_check:
        v.reason = "not checkable (require_check is on)"
    elif final is None:
        v.reason = "no final answer"
    else:
        v.outcome = ACCEPTED
        v.reason = f"thumbs up, score {v.score01:.3f} >= {policy.min_score01}, {what}"
    if v.outcome == REJECTED:
        v.prompt, v.steps, v.final_answer = None, [], None
    return v


def _time(s: str) -> datetime | None:
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


def records_between(
    records: Iterable[dict[str, Any]], after: str | None = None, until: str | None = None
) -> list[dict[str, Any]]:
    """Records with after < created_at <= until (ISO times; None = unbounded), oldest first."""
    lo, hi = (_time(after) if after else None), (_time(until) if until else None)
    out = []
    for rec in records:
        t = _time(str(rec.get("created_at") or ""))
        if t is None or (lo is not None and t <= lo) or (hi is not None and t > hi):
            continue
        out.append((t, rec))
    return [rec for _, rec in sorted(out, key=lambda x: x[0])]


def validate_records(records: Iterable[dict[str, Any]], policy: FeedbackPolicy) -> list[Validated]:
    return [validate_record(r, policy) for r in records]


def summary(rows: Sequence[Validated]) -> dict[str, Any]:
    """Counts by outcome, rejection reasons (rule names) and PII redactions, for materialization metadata."""
    pii: Counter[str] = Counter()
    for r in rows:
        pii.update(r.pii)
    return {
        "num_records": len(rows),
        "by_outcome": {k: sum(r.outcome == k for r in rows) for k in (ACCEPTED, NEGATIVE, REJECTED)},
        "rejected_reasons": dict(Counter(r.reason.split(":")[0] for r in rows if r.outcome == REJECTED)),
        "pii_redactions": dict(pii),
        "records_with_pii": sum(bool(r.pii) for r in rows),
        "checked": sum(r.checked for r in rows if r.outcome != REJECTED),
    }


def to_dataset(rows: Sequence[Validated]) -> tuple[list[Problem], list[ChainOfThought]]:
    """Problems and chains from validated feedback: accepted → valid chains, negatives → invalid ones.

    A problem's gold answer is the question's computed value, else the accepted answer; a negative
    whose question has neither (no accepted positive of the same question, nothing computable) has no
    trustworthy gold and is left out of the dataset (it stays in the outcome table).
    """
    gold: dict[str, str] = {}
    for r in rows:
        if r.outcome == ACCEPTED and r.prompt:
            gold.setdefault(r.prompt, r.expected or str(r.final_answer))
    for r in rows:
        if r.outcome == NEGATIVE and r.prompt and r.expected is not None:
            gold.setdefault(r.prompt, r.expected)
    problems: dict[str, Problem] = {}
    cots: list[ChainOfThought] = []
    for r in rows:
        if r.outcome not in (ACCEPTED, NEGATIVE) or not r.prompt or r.prompt not in gold:
            continue
        p = problems.get(r.prompt)
        if p is None:
            p = Problem.create(
                source=USER_SOURCE,
                statement=r.prompt,
                domain="math",
                subdomain="user feedback",
                answer_gold=gold[r.prompt],
                meta={"interaction_id": r.interaction_id, "user_hash": r.user_hash, "created_at": r.created_at},
            )
            problems[r.prompt] = p
        cots.append(
            ChainOfThought(
                cot_id=stable_id(USER_SOURCE, r.interaction_id),
                problem_id=p.problem_id,
                steps=list(r.steps),
                final_answer=str(r.final_answer or ""),
                is_valid=r.outcome == ACCEPTED,
                validation_reason=r.reason,
                origin=USER_SOURCE,
                meta={"interaction_id": r.interaction_id, "user_hash": r.user_hash, "checked": r.checked},
            )
        )
    return list(problems.values()), cots

"""How the student is asked (SPEC F3): the instruction, and worked examples shown before the problem.

A small student writes far better chains when it first sees two solved problems in the exact
"Step k:" format (SmolLM2-135M on four one-digit additions: greedy 0.00 → 0.46, pass@8 0.38 → 0.79,
bench/results/dataset_design.json). A dataset version asks for it with `few_shot: N`; the problems
asset then marks N train-split problems with gold chains as the examples, and every later step —
sampling, teacher-forced extraction, the checkpoint's meta, the service — renders the same prompt:

    >>> ex = [Example("Calculate 1 + 2 + 3.", ["1 + 2 = 3", "3 + 3 = 6"], "6")]
    >>> print(render_plain("Calculate 4 + 4.", ex).splitlines()[-1])
    Solution:

Examples are train-split problems only, so no test problem is ever shown to the student. A version
without examples shows the student its registry entry's own (`few_shot:` in configs/llms/<tag>.yaml,
written for base models such as Gemma-3-270M, with numbers outside the datasets' one-digit range).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

INSTRUCTION = (
    "Solve the problem step by step. Write each step on its own line, starting with "
    '"Step 1:", "Step 2:", and so on. End with a final line "Answer: <number>".'
)
RANK_KEY = "few_shot_rank"  # Problem.meta key marking a problem as the version's example number `rank`


@dataclass(frozen=True)
class Example:
    statement: str
    steps: list[str]
    answer: str

    def solution(self) -> str:
        lines = [f"Step {i}: {s}" for i, s in enumerate(self.steps, 1)]
        return "\n".join([*lines, f"Answer: {self.answer}"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        steps = d.get("steps")
        if not isinstance(d.get("statement"), str) or not isinstance(steps, list) or not steps:
            raise ValueError(f"a few-shot example needs a statement and a non-empty list of steps, got {d!r}")
        return cls(d["statement"], [str(s) for s in steps], str(d.get("answer", "")))


def mark_examples(problems: Sequence[Any], n: int) -> list[Any]:
    """Mark `n` train-split problems that carry gold steps as examples (meta[RANK_KEY]); clears older marks.

    The choice is deterministic (sorted by problem_id) and prefers the longest gold chains, so the
    student sees the multi-step format. Raises when fewer than `n` candidates exist.
    """
    if n < 0:
        raise ValueError(f"few_shot must be >= 0, got {n}")
    for p in problems:
        if RANK_KEY in p.meta:
            p.meta = {k: v for k, v in p.meta.items() if k != RANK_KEY}
    if n == 0:
        return []
    pool = [
        p
        for p in problems
        if p.split == "train" and len(p.meta.get("gold_steps") or []) >= 1 and not getattr(p, "train_only", False)
    ]
    if len(pool) < n:
        raise ValueError(
            f"few_shot: {n} needs {n} train-split problems with gold steps, found {len(pool)}: "
            "lower few_shot or add a source with rationales"
        )
    pool.sort(key=lambda p: (-len(p.meta["gold_steps"]), p.problem_id))
    chosen = pool[:n]
    for rank, p in enumerate(chosen):
        p.meta = {**p.meta, RANK_KEY: rank}
    return chosen


def examples_of(problems: Iterable[Any]) -> list[Example]:
    """The examples a version's problems are marked with, in rank order (empty when none are)."""
    marked = sorted((p.meta[RANK_KEY], p) for p in problems if RANK_KEY in (p.meta or {}))
    return [Example(p.statement.strip(), [str(s) for s in p.meta["gold_steps"]], str(p.answer_gold)) for _, p in marked]


class Prompt(str):
    """A rendered prompt that remembers the question it asks (`.question`), so step-latent extraction can pool
    the question's own tokens (`question_pooling: span`) without every caller passing it along. Any string
    built from it (prompt + chain text) is a plain `str` again."""

    question: str

    def __new__(cls, text: str, question: str) -> Prompt:
        out = super().__new__(cls, text)
        out.question = question
        return out


def render_plain(statement: str, examples: Sequence[Example] = ()) -> Prompt:
    """The prompt for a model without a chat template."""
    blocks = [f"{INSTRUCTION}\n\nProblem: {e.statement}\n\nSolution:\n{e.solution()}" for e in examples]
    blocks.append(f"{INSTRUCTION}\n\nProblem: {statement.strip()}\n\nSolution:\n")
    return Prompt("\n\n".join(blocks), statement.strip())


def render(tokenizer: Any, statement: str, examples: Sequence[Example] = (), fmt: str = "auto") -> Prompt:
    """The prompt: chat turns (one user/assistant pair per example) when the tokenizer has a template.

    fmt: "auto" (chat when the tokenizer has a template), "plain" (always plain text: a base model's GGUF
    may carry a chat template it was never tuned on), "chat" (a template is required).
    """
    if fmt not in ("auto", "plain", "chat"):
        raise ValueError(f"prompt format {fmt!r} is not one of auto, plain, chat")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "chat" and not has_template:
        raise ValueError(
            "prompt_format: chat needs a tokenizer with a chat template, and this one has none: "
            "use prompt_format: plain (or auto) in the LLM's registry entry"
        )
    if fmt == "plain" or not has_template:
        return render_plain(statement, examples)
    turns: list[dict[str, str]] = []
    for e in examples:
        turns.append({"role": "user", "content": f"{INSTRUCTION}\n\nProblem: {e.statement}"})
        turns.append({"role": "assistant", "content": e.solution()})
    turns.append({"role": "user", "content": f"{INSTRUCTION}\n\nProblem: {statement.strip()}"})
    return Prompt(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True), statement.strip())

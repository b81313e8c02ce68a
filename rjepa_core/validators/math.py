"""Math answers: normalisation and equality (numeric with tolerance, then symbolic with sympy).

    >>> normalize_answer("The answer is \\\\boxed{\\\\frac{3}{4}}")
    '0.75'
    >>> answers_equal("$1,200.00", "1200"), answers_equal("50%", "0.5"), answers_equal("2*(x+1)", "2x+2")
    (True, True, True)

Numbers become canonical text (integers as `42`, terminating decimals as `0.75`, other
rationals as `1/3`), so equal values give equal keys for majority votes. Model output is never
`eval`ed: symbolic parsing only runs on text made of digits, operators and whitelisted names.
"""

from __future__ import annotations

import re
from fractions import Fraction

_CURRENCY = re.compile(r"(\\\$|\$|€|£|¥|₹|\busd\b|\beur\b|\bgbp\b|\brs\.?)", re.I)
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d])")
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?$", re.I)
_FRACTION = re.compile(r"^([-+]?\d+)\s*/\s*(\d+)$")
_LEADING_NUMBER = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*\d+)?)\s*(%?)\s*([a-z][a-z.\s]*)?$", re.I)
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*(.+)$", re.I | re.S)
_NAMES = {"sqrt", "pi", "e", "i", "sin", "cos", "tan", "log", "ln", "exp", "oo", "abs"}
_SYMBOLIC_OK = re.compile(r"^[0-9a-zA-Z+\-*/^().,\s]*$")
_LATEX = [
    (r"\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\displaystyle|\\text\{[^}]*\}|\\mathrm\{[^}]*\}|\^\\circ|\\circ", ""),
    (r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))"),
    (r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)"),
    (r"\\(?:cdot|times)", "*"),
    (r"\\div", "/"),
    (r"\\pi", "pi"),
    (r"\\infty", "oo"),
]


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def _final_part(s: str) -> str:
    boxed = extract_boxed(s)
    if boxed is not None:
        return boxed
    if "####" in s:
        return s.rsplit("####", 1)[1]
    m = _ANSWER_IS.search(s)
    return m.group(1) if m else s


def _fraction_text(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # terminating decimal: write it exactly
        text = f"{x.numerator / x.denominator:.12f}" if abs(x) < 1e15 else str(float(x))
        return text.rstrip("0").rstrip(".")
    return f"{x.numerator}/{x.denominator}"


def _as_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, had_percent) when `s` is a plain number, fraction or percentage with units."""
    m = _LEADING_NUMBER.match(s.strip())
    if not m:
        return None
    num = m.group(1).replace(" ", "")
    try:
        fm = _FRACTION.match(num)
        value = Fraction(int(fm.group(1)), int(fm.group(2))) if fm else Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value, bool(m.group(2))


def _clean(s: str) -> str:
    s = _final_part(s).strip()
    s = s.replace("−", "-").replace("–", "-").replace("\\%", "%").replace("$", " $ ")
    s = _CURRENCY.sub(" ", s)
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)  # "x = 5" -> "5"
    s = s.strip().rstrip(".").strip()
    return re.sub(r"\s+", " ", s)


def normalize_answer(s: str | None) -> str | None:
    """Canonical text of an answer, or None when there is none."""
    if s is None:
        return None
    s = _clean(str(s))
    if not s:
        return None
    parsed = _as_number(s)
    if parsed is not None:
        return _fraction_text(parsed[0])
    latex = _delatex(s)
    parsed = _as_number(latex.replace("(", "").replace(")", "")) if latex else None
    if parsed is not None:
        return _fraction_text(parsed[0])
    return re.sub(r"\s+", "", latex or s).lower()


def _delatex(s: str) -> str:
    for _ in range(4):  # inner-most first: \frac{\sqrt{2}}{2} needs two rounds
        for pattern, repl in _LATEX:
            s = re.sub(pattern, repl, s)
    return s.replace("{", "(").replace("}", ")").replace("\\", "").strip()


def _sympy_expr(s: str):
    """Parse whitelisted text with sympy; None if it is not a safe, parseable expression."""
    text = _delatex(_clean(s)).replace("^", "**")
    if not text or not _SYMBOLIC_OK.match(text) or "__" in text:
        return None
    if any(len(w) > 1 and w.lower() not in _NAMES for w in re.findall(r"[A-Za-z]+", text)):
        return None  # words, not maths
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    try:
        return parse_expr(text.replace("ln(", "log("), transformations=transformations, evaluate=True)
    except Exception:  # sympy raises many kinds (SyntaxError, TokenError, TypeError) on odd text
        return None


def _close(a: float, b: float, rel_tol: float) -> bool:
    return abs(a - b) <= max(rel_tol * max(abs(a), abs(b)), 1e-12)


def answers_equal(pred: str | None, gold: str | None, rel_tol: float = 1e-6) -> bool:
    """True when `pred` and `gold` denote the same answer (numbers within `rel_tol`, or symbolically)."""
    if pred is None or gold is None:
        return False
    np_, ng = normalize_answer(pred), normalize_answer(gold)
    if np_ is None or ng is None:
        return False
    if np_ == ng:
        return True
    a, b = _as_number(_clean(pred)), _as_number(_clean(gold))
    if a is not None and b is not None:
        (va, pa), (vb, pb) = a, b
        candidates = [(va, vb)]  # "50%" also matches "0.5"
        candidates += [(va / 100, vb)] if pa and not pb else []
        candidates += [(va, vb / 100)] if pb and not pa else []
        return any(_close(float(x), float(y), rel_tol) for x, y in candidates)
    return _symbolic_equal(pred, gold, rel_tol)


def _symbolic_equal(pred: str, gold: str, rel_tol: float) -> bool:
    ea, eb = _sympy_expr(pred), _sympy_expr(gold)
    if ea is None or eb is None:
        return False
    import sympy

    try:
        diff = sympy.simplify(ea - eb)
        if diff == 0:
            return True
        free = sorted(diff.free_symbols, key=str)
        if not free:
            va, vb = complex(ea.evalf()), complex(eb.evalf())
            return abs(va - vb) <= max(rel_tol * max(abs(va), abs(vb)), 1e-12)
        # Numeric spot-check at a few points catches equalities simplify() misses.
        for point in (0.37, 1.91, -2.3):
            subs = {s: point + k * 0.17 for k, s in enumerate(free)}
            va, vb = complex(ea.evalf(subs=subs)), complex(eb.evalf(subs=subs))
            if abs(va - vb) > max(rel_tol * max(abs(va), abs(vb)), 1e-9):
                return False
        return True
    except Exception:  # non-numeric results (sets, relations) are simply not equal here
        return False

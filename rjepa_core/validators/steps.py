"""Step-level arithmetic re-checking: `<<expr=value>>` annotations and plain `a op b = c` text.

    >>> first_wrong_step(["3 * 4 = 12 apples", "She sells <<12-5=8>>8", "8 + 1 = 9"])
    1
    >>> check_step("Half of 48 is 48/2 = <<48/2=24>>24").ok
    True

Expressions are evaluated with an AST walker over numbers and + - * / // % ** (never `eval`).
A stated value written with k decimals is accepted when it is the true value rounded to k
decimals (`10/3 = 3.33` is right), else within a relative tolerance.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from fractions import Fraction

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_RUN = re.compile(r"[0-9.,$€£()+\-*/×÷x^ \t]+$")  # arithmetic characters right before an '='
_RHS = re.compile(r"\s*\$?\s*(-?\d+(?:,\d{3})*(?:\.\d+)?)(?!\s*[-+*/×÷^%\d])")
_RHS_EXPR = re.compile(r"[0-9.,$€£()+\-*/×÷x^ \t]+")  # "2 + 3 = 4 + 1": an expression on the right
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


@dataclass
class StepCheck:
    ok: bool  # False when any checked equality is wrong
    checked: int = 0  # equalities found and evaluated
    errors: list[str] = field(default_factory=list)  # "48/2 = 23 (should be 24)" per wrong equality

    @property
    def first_error(self) -> str | None:
        return self.errors[0] if self.errors else None


def _number(text: str) -> Fraction:
    return Fraction(text.replace(",", "").replace("$", "").strip())


def safe_eval(expr: str) -> Fraction:
    """Exact value of an arithmetic expression; ValueError when it is not one."""
    text = expr.replace("×", "*").replace("÷", "/").replace("^", "**")
    text = re.sub(r"[$€£]", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not arithmetic: {expr!r}") from None

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            op = _OPS[type(node.op)]
            if op in ("/", "//", "%") and b == 0:
                raise ValueError(f"division by zero in {expr!r}")
            if op == "**":
                if b.denominator != 1 or abs(b) > 64:
                    raise ValueError(f"exponent out of range in {expr!r}")
                return a**b.numerator
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "//": Fraction(a // b), "%": a % b}[op]
        raise ValueError(f"not arithmetic: {expr!r}")

    try:
        return ev(tree.body)
    except ZeroDivisionError:
        raise ValueError(f"division by zero in {expr!r}") from None


def value_matches(true: Fraction, stated_text: str, rel_tol: float = 1e-6) -> bool:
    """Is `stated_text` the value `true`, allowing rounding to the digits it shows?"""
    stated = _number(stated_text)
    if stated == true:
        return True
    decimals = len(stated_text.split(".", 1)[1]) if "." in stated_text else 0
    if abs(true - stated) <= Fraction(1, 2 * 10**decimals) and (decimals > 0 or true.denominator != 1):
        return True
    return abs(float(true - stated)) <= rel_tol * max(abs(float(true)), 1e-12)


def _has_operator(expr: str) -> bool:
    return bool(re.search(r"\d\s*\)?\s*[-+*/×÷x^]\s*\(?\s*-?\$?\s*\d", expr))


def _parsable(expr: str, from_left: bool) -> str:
    """Longest part of `expr` that parses, dropping junk ("1. ", "(", trailing ".") at one end."""
    while expr.strip():
        try:
            safe_eval(expr)
            return expr.strip()
        except ValueError:
            expr = expr.strip()[1:] if from_left else expr.strip()[:-1]
    return ""


def _plain_equalities(text: str) -> list[tuple[str, str]]:
    """(left expression, stated value or expression) for every `... a op b = c` in free text."""
    found = []
    for m in re.finditer(r"=", text):
        before, after = text[: m.start()], text[m.end() :]
        run = _RUN.search(before)
        if not run or not _has_operator(run.group(0)):
            continue
        left = _parsable(run.group(0), from_left=True)
        if not _has_operator(left):
            continue
        rhs = _RHS.match(after)
        if rhs:
            found.append((left, rhs.group(1)))
        elif (rexpr := _RHS_EXPR.match(after)) and _has_operator(rexpr.group(0)):
            right = _parsable(rexpr.group(0), from_left=False)
            if right:
                found.append((left, right))
    return found


def check_step(step: str, rel_tol: float = 1e-6) -> StepCheck:
    """Re-compute every annotated and plain equality in one step."""
    result = StepCheck(ok=True)
    pairs = [(m.group(1), m.group(2)) for m in _ANNOTATION.finditer(step)]
    pairs += _plain_equalities(_ANNOTATION.sub(" ", step))
    for expr, stated in pairs:
        try:
            true = safe_eval(expr)
            if _has_operator(stated):
                other = safe_eval(stated)
                good = abs(float(true - other)) <= rel_tol * max(abs(float(true)), 1e-12)
            else:
                good = value_matches(true, stated.strip(), rel_tol)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue  # not checkable arithmetic: neither right nor wrong
        result.checked += 1
        if not good:
            result.ok = False
            result.errors.append(f"{expr.strip()} = {stated.strip()} (should be {_show(true)})")
    return result


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):.6g}"


def first_wrong_step(steps: list[str]) -> int | None:
    """Index of the first step holding a wrong equality, or None when all checkable ones are right."""
    for i, step in enumerate(steps):
        if not check_step(step).ok:
            return i
    return None

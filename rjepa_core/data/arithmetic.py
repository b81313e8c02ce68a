"""Gold step-by-step chains for arithmetic expressions (reasoning-gym's chain_sum, basic_arithmetic).

Those tasks ship an expression and its value but no rationale; we derive one by evaluating the
expression's syntax tree bottom-up, one binary or unary operation per step, with exact fractions:

    >>> arithmetic_steps("( 2 + -8 ) + 4")
    (['2 + -8 = -6', '-6 + 4 = -2'], '-2')
"""

from __future__ import annotations

import ast
from fractions import Fraction

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def format_number(x: Fraction) -> str:
    """Integers as integers, other values as a short decimal."""
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return text


def arithmetic_steps(expression: str) -> tuple[list[str], str]:
    """Evaluate `expression` step by step; return (steps, final value as text)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {expression!r} ({e.msg})") from None
    steps: list[str] = []

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = node.operand
            v = ev(inner)
            if isinstance(node.op, ast.UAdd):
                return v
            if isinstance(inner, ast.Constant):  # a plain negative literal is not a step
                return -v
            steps.append(f"-({format_number(v)}) = {format_number(-v)}")
            return -v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            sym = _OPS[type(node.op)]
            if sym == "/" and b == 0:
                raise ValueError(f"division by zero in {expression!r}")
            r = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else Fraction(0)}[sym]
            steps.append(f"{format_number(a)} {sym} {format_number(b)} = {format_number(r)}")
            return r
        raise ValueError(f"unsupported element {ast.dump(node)[:60]} in {expression!r}")

    value = ev(tree.body)
    if not steps:  # a bare number: one restating step keeps every chain non-empty
        steps.append(f"The value is {format_number(value)}")
    return steps, format_number(value)

"""Propositional logic: parse formulas, build truth tables, check equivalence and entailment.

    >>> equivalent("A -> B", "~A | B"), entails(["A -> B", "A"], "B"), is_tautology("p or not p")
    (True, True, True)
    >>> logic_answers_equal("Valid", "yes"), logic_answers_equal("~(A & B)", "~A | ~B")
    (True, True)

Operators (loosest first): `<->` (`iff`, `↔`, `<=>`), `->` (`implies`, `→`, `=>`, right-assoc),
`|` (`or`, `∨`, `||`), `^` (`xor`, `⊕`), `&` (`and`, `∧`, `&&`), `~` (`not`, `¬`, `!`);
constants `T/F`, `true/false`, `1/0`. Up to 16 variables (a truth table is 2^n rows).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MAX_VARS = 16
_TOKEN = re.compile(r"\s*(<->|<=>|↔|->|=>|→|\|\||&&|[()~¬!&∧|∨^⊕]|[A-Za-z_][A-Za-z_0-9]*|[01])")
_WORDS = {"not": "~", "and": "&", "or": "|", "xor": "^", "implies": "->", "iff": "<->"}
_SYMBOLS = {"¬": "~", "!": "~", "∧": "&", "&&": "&", "∨": "|", "||": "|", "⊕": "^", "→": "->", "=>": "->"}
_SYMBOLS |= {"↔": "<->", "<=>": "<->"}
_CONST = {"t": True, "true": True, "1": True, "f": False, "false": False, "0": False}
_TRUTHY = {"true", "yes", "valid", "t", "1", "correct", "entailed", "follows"}
_FALSY = {"false", "no", "invalid", "f", "0", "incorrect", "not entailed", "does not follow"}


@dataclass(frozen=True)
class Formula:
    op: str  # "var", "const", "~", "&", "|", "^", "->", "<->"
    args: tuple  # sub-formulas, or (name,) for var, (bool,) for const

    def __str__(self) -> str:
        if self.op in ("var", "const"):
            return str(self.args[0])
        if self.op == "~":
            return f"~{self.args[0]}"
        return f"({self.args[0]} {self.op} {self.args[1]})"


def _tokens(text: str) -> list[str]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read formula {text!r} at {text[pos:]!r}: use ~ & | ^ -> <-> and parentheses")
        tok = m.group(1)
        low = tok.lower()
        out.append(_WORDS.get(low) or _SYMBOLS.get(tok) or tok)
        pos = m.end()
    return out


def parse_formula(text: str) -> Formula:
    """Parse `text` into a Formula; ValueError with the position on bad input."""
    toks = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"formula {text!r} ends too early")
        pos += 1
        return toks[pos - 1]

    def binary(level: int) -> Formula:
        ops = ["<->", "->", "|", "^", "&"]
        if level == len(ops):
            return unary()
        left = binary(level + 1)
        while peek() == ops[level]:
            take()
            right = binary(level) if ops[level] == "->" else binary(level + 1)  # -> is right-assoc
            left = Formula(ops[level], (left, right))
            if ops[level] == "->":
                break
        return left

    def unary() -> Formula:
        tok = take()
        if tok == "~":
            return Formula("~", (unary(),))
        if tok == "(":
            inner = binary(0)
            if take() != ")":
                raise ValueError(f"missing ')' in {text!r}")
            return inner
        if tok.lower() in _CONST:
            return Formula("const", (_CONST[tok.lower()],))
        if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", tok):
            return Formula("var", (tok,))
        raise ValueError(f"unexpected {tok!r} in formula {text!r}")

    tree = binary(0)
    if pos != len(toks):
        raise ValueError(f"unexpected {toks[pos]!r} in formula {text!r}")
    return tree


def _as_formula(f: Formula | str) -> Formula:
    return parse_formula(f) if isinstance(f, str) else f


def variables(f: Formula | str) -> list[str]:
    f = _as_formula(f)
    if f.op == "var":
        return [f.args[0]]
    if f.op == "const":
        return []
    return sorted({v for a in f.args for v in variables(a)})


def evaluate(f: Formula | str, assignment: dict[str, bool]) -> bool:
    f = _as_formula(f)
    if f.op == "var":
        return assignment[f.args[0]]
    if f.op == "const":
        return f.args[0]
    vals = [evaluate(a, assignment) for a in f.args]
    if f.op == "~":
        return not vals[0]
    a, b = vals
    return {"&": a and b, "|": a or b, "^": a != b, "->": (not a) or b, "<->": a == b}[f.op]


def _assignments(names: list[str]):
    if len(names) > MAX_VARS:
        raise ValueError(f"{len(names)} variables: truth tables stop at {MAX_VARS}")
    for values in itertools.product([False, True], repeat=len(names)):
        yield dict(zip(names, values, strict=True))


def truth_table(f: Formula | str) -> list[tuple[dict[str, bool], bool]]:
    """Every assignment of the formula's variables with the formula's value."""
    f = _as_formula(f)
    return [(a, evaluate(f, a)) for a in _assignments(variables(f))]


def equivalent(a: Formula | str, b: Formula | str) -> bool:
    fa, fb = _as_formula(a), _as_formula(b)
    names = sorted(set(variables(fa)) | set(variables(fb)))
    return all(evaluate(fa, x) == evaluate(fb, x) for x in _assignments(names))


def is_tautology(f: Formula | str) -> bool:
    return all(v for _, v in truth_table(f))


def is_satisfiable(f: Formula | str) -> bool:
    return any(v for _, v in truth_table(f))


def entails(premises: list[Formula | str], conclusion: Formula | str) -> bool:
    """True when every assignment making all premises true makes the conclusion true."""
    ps, c = [_as_formula(p) for p in premises], _as_formula(conclusion)
    names = sorted({v for f in [*ps, c] for v in variables(f)})
    return all(evaluate(c, x) for x in _assignments(names) if all(evaluate(p, x) for p in ps))


def truth_value(text: str) -> bool | None:
    """`yes/true/valid/...` -> True, `no/false/invalid/...` -> False, else None."""
    t = re.sub(r"[^a-z0-9 ]", "", text.strip().lower()).strip()
    return True if t in _TRUTHY else False if t in _FALSY else None


def logic_answers_equal(pred: str | None, gold: str | None) -> bool:
    """Same truth verdict, equivalent formulas, or the same text."""
    if pred is None or gold is None:
        return False
    tp, tg = truth_value(pred), truth_value(gold)
    if tp is not None and tg is not None:
        return tp == tg
    try:
        return equivalent(pred, gold)
    except (ValueError, KeyError):
        return " ".join(pred.lower().split()) == " ".join(gold.lower().split())

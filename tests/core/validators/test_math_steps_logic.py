"""Table-driven checks of answer equivalence, first-wrong-step detection and propositional logic."""

from __future__ import annotations

import pytest

from rjepa_core.validators.logic import (
    entails,
    equivalent,
    is_satisfiable,
    is_tautology,
    logic_answers_equal,
    parse_formula,
    truth_table,
)
from rjepa_core.validators.math import answers_equal, normalize_answer
from rjepa_core.validators.steps import check_step, first_wrong_step

EQUAL = [
    ("42", "42.0"),
    ("$1,200.00", "1200"),
    ("1,000,000", "1000000"),
    ("50%", "0.5"),
    ("50%", "50"),
    ("\\boxed{\\frac{3}{4}}", "0.75"),
    ("The answer is \\boxed{\\dfrac{1}{2}}", "1/2"),
    ("#### 18", "18"),
    ("x = 5", "5"),
    ("12 apples", "12"),
    ("€7.50", "7.5"),
    ("−3", "-3"),
    ("0.3333333", "1/3"),
    ("2*(x+1)", "2x+2"),
    ("\\frac{\\sqrt{2}}{2}", "1/sqrt(2)"),
    ("\\pi r^2", "pi*r**2"),
    ("(x+1)^2", "x^2 + 2x + 1"),
]
NOT_EQUAL = [
    ("13", "12"),
    ("0.33", "1/3"),
    ("x+1", "x-1"),
    ("50%", "5"),
    (None, "1"),
    ("", "1"),
    ("__import__('os').system('echo hi')", "0"),  # never evaluated
    ("seven", "7"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equivalent_answers(a, b):
    assert answers_equal(a, b) and answers_equal(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_different_answers(a, b):
    assert not answers_equal(a, b)


def test_normalize_answer_canonical_keys():
    assert normalize_answer("0.50") == normalize_answer("1/2") == "0.5"
    assert normalize_answer("\\boxed{1/3}") == "1/3"
    assert normalize_answer("  ") is None and normalize_answer(None) is None


STEPS = [
    (["Natalia sold 48/2 = <<48/2=24>>24 clips in May.", "In total 48+24 = <<48+24=72>>72 clips."], None),
    (["3 * 4 = 12 apples", "She sells <<12-5=8>>8", "8 + 1 = 9"], 1),
    (["2 + -8 = -6", "-6 + 4 = -3"], 1),
    (["10/3 = 3.33 hours each", "3.33 * 3 = 9.99"], None),  # rounding to the digits shown is fine
    (["10/3 = 3.4 hours"], 0),
    (["Step 1: $1,000 + $2,000 = $3,000.", "Step 2: 3,000 x 2 = 6,000"], None),
    (["2 + 3 = 4 + 1 = 5"], None),
    (["First, 2 + 3 = 6 + 1 = 7"], 0),  # chained equality: 2 + 3 is not 6 + 1
    (["We have 7 apples.", "So x = 5 and the year 2020 is fine."], None),  # nothing checkable
    (["(3 + 4) * 2 = 14", "2^10 = 1024", "15 / 4 = 3.75", "3 × 4 = 13"], 3),
]


@pytest.mark.parametrize(("steps", "wrong"), STEPS)
def test_first_wrong_step(steps, wrong):
    assert first_wrong_step(steps) == wrong


def test_check_step_reports_the_error():
    c = check_step("She has <<48/2=23>>23 left and 23 + 1 = 24")
    assert not c.ok and c.checked == 2 and c.first_error == "48/2 = 23 (should be 24)"
    assert check_step("Nothing to compute here.").checked == 0


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("A -> B", "~A | B", True),
        ("not (A and B)", "not A or not B", True),
        ("A ^ B", "(A | B) & ~(A & B)", True),
        ("A <-> B", "(A -> B) ∧ (B → A)", True),
        ("A -> B -> C", "A -> (B -> C)", True),
        ("A -> B -> C", "(A -> B) -> C", False),
        ("A -> B", "B -> A", False),
    ],
)
def test_formula_equivalence(a, b, same):
    assert equivalent(a, b) is same


def test_truth_tables_and_rules():
    rows = truth_table("A & B")
    assert len(rows) == 4 and [v for _, v in rows] == [False, False, False, True]
    assert is_tautology("p | ~p") and not is_satisfiable("p & ~p")
    assert entails(["A -> B", "A"], "B")  # modus ponens
    assert entails(["A -> B", "~B"], "~A")  # modus tollens
    assert not entails(["A -> B", "B"], "A")  # affirming the consequent
    assert logic_answers_equal("Valid", "yes") and not logic_answers_equal("invalid", "True")
    with pytest.raises(ValueError, match="cannot read formula"):
        parse_formula("A $ B")

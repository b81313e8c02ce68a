"""Few-shot prompts: which problems become examples, how they render, and that every step asks alike."""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.data.datasets import DatasetConfig, build_problems
from rjepa_core.data.sources import SourceSpec
from rjepa_core.llm.prompting import RANK_KEY, Example, examples_of, mark_examples, render, render_plain
from rjepa_core.pipeline import extract_latents, sample_student_chains

ADD4 = {
    "min_terms": 4,
    "max_terms": 4,
    "min_digits": 1,
    "max_digits": 1,
    "allow_parentheses": False,
    "operators": ["+"],
}


def version(few_shot: int, **kw) -> DatasetConfig:
    src = SourceSpec(
        kind="reasoning_gym", task="basic_arithmetic", size=30, seed=5, params={**ADD4, "operators": ["+"]}
    )
    return DatasetConfig(version="fs", sources=[src], few_shot=few_shot, **kw)


def test_examples_are_train_problems_with_gold_chains_chosen_deterministically():
    problems = build_problems(version(2), parent_problems=[])
    ex = examples_of(problems)
    assert len(ex) == 2
    marked = [p for p in problems if RANK_KEY in p.meta]
    assert {p.split for p in marked} == {"train"}  # never a test or val problem
    assert [e.statement for e in ex] == [p.statement for p in sorted(marked, key=lambda p: p.meta[RANK_KEY])]
    assert all(len(e.steps) == 3 and e.answer for e in ex)  # four terms: three gold steps
    again = examples_of(build_problems(version(2), parent_problems=[]))
    assert again == ex
    # a child version without few_shot clears the parent's marks; asking for too many says what to do
    assert examples_of(build_problems(version(0), parent_problems=problems)) == []
    with pytest.raises(ValueError, match="lower few_shot"):
        mark_examples(problems, 500)
    with pytest.raises(ValueError, match="few_shot must be an integer"):
        version(-1)


def test_plain_rendering_shows_each_worked_example_before_the_problem():
    ex = [Example("Calculate 1 + 2 + 3.", ["1 + 2 = 3", "3 + 3 = 6"], "6")]
    text = render_plain("Calculate 4 + 4 + 1.", ex)
    assert text.index("Step 1: 1 + 2 = 3\nStep 2: 3 + 3 = 6\nAnswer: 6") < text.index("Calculate 4 + 4 + 1.")
    assert text.endswith("Problem: Calculate 4 + 4 + 1.\n\nSolution:\n")
    assert render_plain("Calculate 4 + 4 + 1.") == text[text.rindex("Solve the problem") :]
    with pytest.raises(ValueError, match="non-empty list of steps"):
        Example.from_dict({"statement": "x", "steps": []})
    assert Example.from_dict(ex[0].to_dict()) == ex[0]


def test_chat_template_gets_one_user_and_assistant_turn_per_example(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ex = [Example("Calculate 1 + 2 + 3.", ["1 + 2 = 3", "3 + 3 = 6"], "6")]
    text = render(tok, "Calculate 4 + 4 + 1.", ex)
    assert text.count("<|im_start|>user") == 2 and text.count("<|im_start|>assistant") == 2
    assert "<|im_start|>assistant\nStep 1: 1 + 2 = 3\nStep 2: 3 + 3 = 6\nAnswer: 6<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")  # the model answers next


def test_sampling_and_extraction_use_the_marked_examples(tiny_student):
    problems = build_problems(version(1), parent_problems=[])
    test = [p for p in problems if p.split == "test"][:2]
    subset = test + [p for p in problems if RANK_KEY in p.meta]
    chains = sample_student_chains(tiny_student, subset, k=1, k_test=1, max_new_tokens=6, seed=3)
    assert {c.meta["few_shot"] for c in chains} == {1}
    seqs = extract_latents(tiny_student, subset, chains)
    ex = examples_of(problems)
    c, s = chains[0], seqs[0]
    statement = next(p.statement for p in subset if p.problem_id == c.problem_id)
    with_ex = tiny_student.extract([(tiny_student.prompt_for(statement, ex), c.steps)])[0].H
    without = tiny_student.extract([(tiny_student.prompt_for(statement), c.steps)])[0].H
    np.testing.assert_array_equal(s.H, with_ex)  # the latents were extracted under the sampling prompt
    assert not np.array_equal(with_ex, without)  # and the prompt matters to them


def test_registry_examples_and_plain_format_for_a_base_model(tiny_llm_dir):
    """A base model's registry entry brings its own worked examples (shown when the version has none) and can
    force the plain prompt although its tokenizer carries a chat template."""
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    own = {"statement": "Calculate 12 + 25.", "steps": ["12 + 25 = 37"], "answer": "37"}
    spec = LLMSpec(llm_tag="base", source=str(tiny_llm_dir), prompt_format="plain", few_shot=[own], batch_size=4)
    base = StudentLLM.load(spec, device="cpu")
    assert base.tokenizer.chat_template  # the tiny tokenizer has one, and the entry overrides it
    text = base.prompt_for("Calculate 4 + 4.")
    assert text == render_plain("Calculate 4 + 4.", [Example("Calculate 12 + 25.", ["12 + 25 = 37"], "37")])
    assert "<|im_start|>" not in text and text.index("Step 1: 12 + 25 = 37") < text.index("Calculate 4 + 4.")
    # a version's own examples win over the entry's
    version_ex = [Example("Calculate 1 + 2 + 3.", ["1 + 2 = 3", "3 + 3 = 6"], "6")]
    with_version = base.prompt_for("Calculate 4 + 4.", version_ex)
    assert "12 + 25" not in with_version and "Step 2: 3 + 3 = 6" in with_version

    # sampling and teacher-forced extraction both use the entry's examples (the version has few_shot: 0)
    problems = build_problems(version(0), parent_problems=[])
    test = [p for p in problems if p.split == "test"][:2]
    chains = sample_student_chains(base, test, k=1, k_test=1, max_new_tokens=6, seed=3)
    seqs = extract_latents(base, test, chains)
    statement = next(p.statement for p in test if p.problem_id == chains[0].problem_id)
    H = base.extract([(base.prompt_for(statement), chains[0].steps)])[0].H
    bare = base.extract([(render_plain(statement), chains[0].steps)])[0].H
    np.testing.assert_array_equal(seqs[0].H, H)
    assert not np.array_equal(H, bare)


def test_prompt_format_errors_say_what_to_do(tiny_llm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    assert render(tok, "Calculate 4 + 4.", fmt="chat").startswith("<|im_start|>user")
    tok.chat_template = None
    with pytest.raises(ValueError, match="use prompt_format: plain"):
        render(tok, "Calculate 4 + 4.", fmt="chat")
    with pytest.raises(ValueError, match="not one of auto, plain, chat"):
        render(tok, "Calculate 4 + 4.", fmt="jinja")

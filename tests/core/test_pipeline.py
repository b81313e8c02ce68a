"""Pipeline steps on the tiny real student: labels, chain bookkeeping, latents, training split."""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.pipeline import extract_latents, label_chain, sample_student_chains, split_for_training
from rjepa_core.schemas import ChainOfThought, LatentSequence, Problem


def problem(split="train", answer="5"):
    return Problem.create(
        source="test", statement=f"What is 2 + 3? ({split})", domain="math", answer_gold=answer, split=split
    )


def chain(p, steps, final):
    return ChainOfThought(
        cot_id=final + p.problem_id,
        problem_id=p.problem_id,
        steps=steps,
        final_answer=final,
        is_valid=False,
        origin="student:tiny",
    )


def test_label_chain_checks_answer_and_locates_first_wrong_step():
    p = problem()
    ok = label_chain(p, chain(p, ["2 + 3 = 5"], "5"))
    assert ok.is_valid and ok.meta["first_wrong_step"] is None
    bad = label_chain(p, chain(p, ["2 + 3 = 6", "6 - 1 = 5"], "5.0"))
    assert bad.is_valid  # final answers compare as numbers
    assert bad.meta["first_wrong_step"] == 0
    wrong = label_chain(p, chain(p, ["2 + 3 = 6"], "6"))
    assert not wrong.is_valid and "wrong final answer" in wrong.validation_reason
    empty = label_chain(p, chain(p, ["hmm"], ""))
    assert not empty.is_valid and empty.validation_reason == "no final answer"


def test_sampling_gives_k_per_split_plus_greedy_and_latents_match(tiny_student):
    problems = [problem("train"), problem("test")]
    chains = sample_student_chains(tiny_student, problems, k=2, k_test=3, max_new_tokens=8, seed=1)
    by = {p.split: [c for c in chains if c.problem_id == p.problem_id] for p in problems}
    assert len(by["train"]) == 2
    assert len(by["test"]) == 4 and sum(c.meta["greedy"] for c in by["test"]) == 1
    assert all(c.logprob <= 0 and c.origin == "student:tiny" for c in chains)
    again = sample_student_chains(tiny_student, problems, k=2, k_test=3, max_new_tokens=8, seed=1)
    assert [c.steps for c in again] == [c.steps for c in chains]  # seeded
    seqs = extract_latents(tiny_student, problems, chains)
    assert [s.cot_id for s in seqs] == [c.cot_id for c in chains]
    for s, c in zip(seqs, chains, strict=True):
        assert s.H.shape == (len(c.steps), 64) and s.H.dtype == np.float16 and s.is_valid == c.is_valid
    with pytest.raises(ValueError, match="not in this dataset version"):
        extract_latents(tiny_student, problems[:1], chains)
    with pytest.raises(ValueError, match="k and k_test"):
        sample_student_chains(tiny_student, problems, k=0)


def test_split_for_training_uses_only_valid_targets():
    def seq(i, split, valid):
        return LatentSequence(
            cot_id=str(i),
            problem_id="p",
            llm_tag="t",
            layer_idx=-2,
            hidden_size=2,
            num_steps=1,
            step_spans=[(0, 1)],
            token_ids=[0],
            split=split,
            is_valid=valid,
        )

    seqs = [seq(i, s, v) for i, (s, v) in enumerate([("train", True)] * 20 + [("train", False), ("val", True)])]
    train, val, neg = split_for_training(seqs)
    assert len(train) == 20 and len(val) == 1 and len(neg) == 1
    train, val, _ = split_for_training(seqs[:20])  # no val split: a slice of train is held out
    assert len(train) == 18 and len(val) == 2
    with pytest.raises(ValueError, match="no valid training chains"):
        split_for_training([seq(0, "train", False)])


def test_distinct_chains_drops_repeats_of_a_problem_keeping_gold_and_order():
    from rjepa_core.schemas import distinct_chains

    def seq(i, problem, ids, origin="student:t", valid=True):
        return LatentSequence(
            cot_id=str(i),
            problem_id=problem,
            llm_tag="t",
            layer_idx=-2,
            hidden_size=2,
            num_steps=1,
            step_spans=[(0, 1)],
            token_ids=ids,
            is_valid=valid,
            origin=origin,
        )

    seqs = [
        seq(0, "p", [1, 2]),  # the student's chain, also written by the gold below: the gold one stays
        seq(1, "p", [1, 2], origin="gold"),
        seq(2, "p", [1, 2]),
        seq(3, "q", [1, 2]),  # same tokens, another problem: kept
        seq(4, "p", [1, 3]),
        seq(5, "p", [1, 3], valid=False),  # same tokens but labelled otherwise: kept
        seq(6, "p", [1, 3]),
    ]
    assert [s.cot_id for s in distinct_chains(seqs)] == ["1", "3", "4", "5"]
    assert distinct_chains([]) == []
    train, val, negatives = split_for_training(seqs, distinct=True)  # no val split: the first one is held out
    assert [s.cot_id for s in val + train] == ["1", "3", "4"] and [s.cot_id for s in negatives] == ["5"]
    assert len(split_for_training(seqs)[0]) == 5  # off by default: every repeat is a target


def test_distinct_chains_config_is_validated():
    from rjepa_core.config import TrainConfig

    assert TrainConfig(distinct_chains=True).validate().distinct_chains is True
    with pytest.raises(ValueError, match="distinct_chains must be true or false"):
        TrainConfig(distinct_chains="yes").validate()


def test_training_on_majority_labels_reads_votes_not_the_validator(tmp_path):
    from rjepa_core.pipeline import train_jepa
    from tests.core.jepa.conftest import HIDDEN, tiny_config
    from tests.core.jepa.synthetic import lawful_chains

    H = iter(c.H for c in lawful_chains(20, 5, HIDDEN))
    seqs, chains = [], []

    def add(cid, pid, split, valid, origin, answer=None):
        spans = [(i, i + 1) for i in range(5)]
        seqs.append(
            LatentSequence(
                cot_id=cid,
                problem_id=pid,
                llm_tag="t",
                layer_idx=-2,
                hidden_size=HIDDEN,
                num_steps=5,
                step_spans=spans,
                token_ids=list(range(5)),
                split=split,
                is_valid=valid,
                origin=origin,
                H=next(H),
            )
        )
        if answer is not None:
            kw = {"steps": ["s"] * 5, "final_answer": answer, "is_valid": valid, "origin": origin}
            chains.append(ChainOfThought(cot_id=cid, problem_id=pid, **kw))

    for n in range(4):
        pid, split = f"p{n}", "val" if n == 3 else "train"
        add(f"{pid}-gold", pid, split, True, "gold")
        # the validator says "7" is right, the votes say "5": two samples answer 5, one answers 7
        for i, (answer, valid) in enumerate([("5", False), ("5", False), ("7", True)]):
            add(f"{pid}-{i}", pid, split, valid, "student:t", answer)
    cfg = tiny_config(optim={"total_steps": 4}, train={"labels": "majority"})
    _, meta = train_jepa(seqs, cfg, tmp_path / "votes", device="cpu", chains=chains)
    # train split: 3 gold + 6 majority chains are targets, the 3 minority chains negatives
    assert (meta["labels"], meta["num_train"], meta["num_negatives"], meta["num_val"]) == ("majority", 9, 3, 3)
    _, meta = train_jepa(seqs, tiny_config(optim={"total_steps": 4}), tmp_path / "verdicts", device="cpu")
    assert (meta["labels"], meta["num_train"], meta["num_negatives"]) == ("validator", 6, 6)
    with pytest.raises(ValueError, match="student chains"):
        train_jepa(seqs, cfg, tmp_path / "none", device="cpu")

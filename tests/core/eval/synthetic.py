"""Synthetic evaluation data with known correctness: right chains follow fixed linear dynamics.

    >>> data = make_dataset(n_test=6, n_train=6, k=8, hidden=16, seed=0)
    >>> len(data.test_chains), data.test_latents[data.test_chains[0].cot_id].shape[1]
    (48, 16)

A correct chain's step latents are H_t = W A^t z (A a rotation in a rank-8 space): a world model
can learn to predict masked steps. An incorrect chain follows the same dynamics up to its first
wrong step, where the latent jumps to an unrelated state (meta["first_wrong_step"] says which).
Wrong answers are drawn from a few values so majority vote is sometimes fooled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rjepa_core.schemas import ChainOfThought, Problem

RANK = 8


def _system(hidden: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    q, _ = np.linalg.qr(rng.normal(size=(RANK, RANK)))
    A = np.zeros((RANK, RANK))
    for i, a in enumerate(rng.uniform(0.3, 0.8, size=RANK // 2)):
        A[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return q @ A @ q.T, rng.normal(size=(RANK, hidden)) / np.sqrt(RANK)


def chain_latents(rng: np.random.Generator, steps: int, hidden: int, wrong_step: int | None = None) -> np.ndarray:
    A, W = _system(hidden)
    z = rng.normal(size=RANK)
    out = []
    for t in range(steps):
        if t == wrong_step:
            z = 2.0 * rng.normal(size=RANK)  # the jump: off the learned trajectory
        out.append(z @ W + 0.05 * rng.normal(size=hidden))
        z = A @ z
    return np.stack(out).astype(np.float16)


@dataclass
class Dataset:
    problems: list[Problem] = field(default_factory=list)
    test_chains: list[ChainOfThought] = field(default_factory=list)
    test_latents: dict[str, np.ndarray] = field(default_factory=dict)
    greedy: dict[str, ChainOfThought] = field(default_factory=dict)
    train_chains: list[ChainOfThought] = field(default_factory=list)
    train_latents: dict[str, np.ndarray] = field(default_factory=dict)
    lawful_train: list[np.ndarray] = field(default_factory=list)  # gold-like chains for JEPA training


def _chain(rng, pid: str, split: str, i: int, correct: bool, steps: int, greedy: bool = False) -> ChainOfThought:
    wrong = None if correct else int(rng.integers(1, steps))
    answer = "42" if correct else str(int(rng.choice([7, 13, 99])))
    return ChainOfThought(
        cot_id=f"{pid}-{'g' if greedy else i}",
        problem_id=pid,
        steps=[f"step {t}" for t in range(steps)],
        final_answer=answer,
        is_valid=correct,
        origin="student:synthetic",
        logprob=float(rng.normal(-20.0, 3.0)),
        meta={
            "sample_index": 0 if greedy else i,
            "greedy": greedy,
            "num_new_tokens": int(10 * steps),
            "first_wrong_step": wrong,
            "split": split,
        },
    )


def make_dataset(
    n_test: int = 30, n_train: int = 40, k: int = 8, hidden: int = 16, p_correct: float = 0.35, seed: int = 0
) -> Dataset:
    rng = np.random.default_rng(seed)
    d = Dataset()
    for split, n in (("test", n_test), ("train", n_train), ("val", max(n_train // 4, 2))):
        for j in range(n):
            p = Problem(
                problem_id=f"{split}{j}",
                domain="math",
                source="synthetic",
                statement=f"q{j}",
                answer_gold="42",
                split=split,
            )
            d.problems.append(p)
            for i in range(k):
                steps = int(rng.integers(3, 7))
                c = _chain(rng, p.problem_id, split, i, bool(rng.random() < p_correct), steps)
                H = chain_latents(rng, steps, hidden, c.meta["first_wrong_step"])
                if split == "test":
                    d.test_chains.append(c)
                    d.test_latents[c.cot_id] = H
                else:
                    d.train_chains.append(c)
                    d.train_latents[c.cot_id] = H
            if split == "test":
                d.greedy[p.problem_id] = _chain(rng, p.problem_id, split, 0, bool(rng.random() < 0.3), 4, greedy=True)
    d.lawful_train = [chain_latents(rng, int(rng.integers(3, 7)), hidden) for _ in range(160)]
    return d

"""RERANK mode (SPEC F11): pick the best of K sampled chains by a composite score.

    >>> from rjepa_core.jepa.scoring import ChainScore
    >>> cands = [Candidate("a", ["x", "y"], logprob=-4.0, H=None, num_tokens=8),
    ...          Candidate("b", ["x", "z"], logprob=-6.0, H=None, num_tokens=8)]
    >>> scores = [ChainScore(0.9, [0.9, 0.9]), ChainScore(0.3, [0.3, 0.3])]
    >>> rerank(cands, scores, RerankWeights(alpha=0.0, beta=1.0, gamma=0.0)).best_index   # pure JEPA
    1
    >>> rerank(cands, scores, RerankWeights(alpha=1.0, beta=0.0, gamma=0.0)).best_index   # pure log-prob
    0

composite = alpha * z(logprob per token) + beta * z(-JEPA-loss) + gamma * z(length), where z() is the
z-score of a term over the K candidates (0 when the term is constant, e.g. K = 1). Standardising makes
the weights relative importances whatever the scale of each term (log-probs per token are ~-0.1..-2,
JEPA-losses ~0.1..1, lengths tens to hundreds of tokens).

- logprob per token: logprob / num_tokens; when num_tokens is missing, the count of whitespace-separated
  words of the text stands in. A candidate without logprob gets the worst logprob of the others (0 when none).
- length: num_tokens (else the word count); gamma > 0 favours longer chains, gamma < 0 shorter ones.
Ties go to the earlier candidate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rjepa_core.jepa.scoring import ChainScore


@dataclass
class Candidate:
    text: str  # full chain text as generated
    steps: list[str]  # the chain's segmented steps
    logprob: float | None  # sum of token log-probabilities under the student (None when unknown)
    H: np.ndarray | None  # (num_steps, hidden_size) step latents (None until extracted)
    final_answer: str | None = None  # extracted answer, for majority vote and checking
    num_tokens: int | None = None  # generated tokens; normalises the log-prob
    Q: np.ndarray | None = None  # (hidden_size,) question latent, when H came with one (captured while sampling)


@dataclass
class RerankWeights:
    alpha: float = 0.0  # weight of z(log-prob per token)
    beta: float = 1.0  # weight of z(-JEPA-loss)
    gamma: float = 0.0  # weight of z(length)

    @classmethod
    def from_score_config(cls, cfg: Any) -> RerankWeights:
        return cls(float(cfg.alpha), float(cfg.beta), float(cfg.gamma))


@dataclass
class RerankResult:
    best_index: int  # index of the chosen candidate
    order: list[int]  # candidate indices, best first
    details: list[dict[str, Any]] = field(default_factory=list)  # per candidate, in input order


def _length(c: Candidate) -> int:
    return int(c.num_tokens) if c.num_tokens else max(len(c.text.split()), 1)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def rerank(candidates: Sequence[Candidate], scores: Sequence[ChainScore], weights: RerankWeights) -> RerankResult:
    """Order candidates by composite score (higher is better) and pick the first."""
    if not candidates:
        raise ValueError("rerank needs at least one candidate")
    if len(scores) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores: score every candidate")
    lengths = np.array([_length(c) for c in candidates], dtype=np.float64)
    known = [c.logprob / lengths[i] for i, c in enumerate(candidates) if c.logprob is not None]
    worst = min(known) if known else 0.0
    lp = np.array([c.logprob / lengths[i] if c.logprob is not None else worst for i, c in enumerate(candidates)])
    jepa = np.array([s.jepa_loss for s in scores], dtype=np.float64)
    composite = weights.alpha * _zscore(lp) + weights.beta * _zscore(-jepa) + weights.gamma * _zscore(lengths)
    order = sorted(range(len(candidates)), key=lambda i: (-composite[i], i))
    best = order[0]
    details = [
        {
            "logprob": candidates[i].logprob,
            "logprob_per_token": float(lp[i]),
            "jepa_loss": float(jepa[i]),
            "score01": scores[i].score01,
            "length": int(lengths[i]),
            "composite": float(composite[i]),
            "chosen": i == best,
        }
        for i in range(len(candidates))
    ]
    return RerankResult(best, order, details)


def normalize_answer(answer: str | None) -> str | None:
    """Answer key for voting: stripped, lower-cased, thousands separators and a trailing period removed."""
    if answer is None:
        return None
    a = answer.strip().lower().replace(",", "").rstrip(".").strip()
    return a or None


def majority_vote(answers: Sequence[str | None]) -> int:
    """Index of the first candidate holding the most frequent answer (self-consistency); 0 when none has one."""
    keys = [normalize_answer(a) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return 0
    top = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == top)

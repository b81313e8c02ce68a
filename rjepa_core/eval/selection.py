"""Selection methods compared on the same K candidates (SPEC F15).

    >>> group = [EvalCandidate("a", "7", True, logprob=-5.0, num_tokens=10, jepa_loss=0.2),
    ...          EvalCandidate("b", "8", False, logprob=-3.0, num_tokens=10, jepa_loss=0.9),
    ...          EvalCandidate("c", "7", True, logprob=-6.0, num_tokens=12, jepa_loss=0.4)]
    >>> choose("majority", group), choose("logprob_sum", group), choose("jepa", group)
    (0, 1, 0)

Every method maps one problem's candidates to per-candidate scores (higher = better); the chosen
candidate is the first argmax, and the same scores give the method's AUROC for chain correctness.
`greedy` and `random` do not score candidates: greedy is the greedy-decoded chain (outside the K
samples), random is averaged over many seeded draws.

The JEPA and composite methods go through `rjepa_core.inference.rerank.rerank`, and the JEPA votes
(`jepa_vote`: JEPA-weighted majority with temperature `tau`; `jepa_filter_majority`: majority after the
least lawful quarter is dropped) through `rjepa_core.inference.vote`, the functions the service's
RERANK mode uses, so what is evaluated is what is served.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCORED_METHODS = (
    "majority",
    "logprob_sum",
    "logprob_mean",
    "verifier",
    "probe",
    "jepa",
    "composite",
    "jepa_vote",
    "jepa_filter_majority",
    "jepa_last_filter_majority",
    "jepa_excess_filter_majority",
)
METHODS = ("greedy", "random", *SCORED_METHODS)
VOTES = (  # = inference.vote.VOTE_METHODS
    "jepa_vote",
    "jepa_filter_majority",
    "jepa_last_filter_majority",
    "jepa_excess_filter_majority",
)


@dataclass
class EvalCandidate:
    cot_id: str  # chain id
    answer: str | None  # final answer as written by the student
    correct: bool  # chain is right (is_valid: final answer matches the gold answer)
    logprob: float | None = None  # sum of token log-probs under the student
    num_tokens: int = 1  # generated tokens (normalises the log-prob; the composite's length)
    num_steps: int = 1  # steps of the chain
    jepa_loss: float | None = None  # JEPA-loss (lower = more lawful)
    step_surprise: list[float] | None = None  # per-step JEPA surprise
    verifier: float | None = None  # supervised verifier P(correct)
    probe: float | None = None  # linear probe P(correct)
    text: str = ""  # chain text (only used when num_tokens is unknown)
    problem_id: str = ""  # the problem the candidate answers (studies and dumps)
    first_wrong_step: int | None = None  # labelled first wrong step of an incorrect chain (None: unknown / correct)
    step_z: list[float] | None = None  # position-normalised step surprise (with a surprise normaliser)


@dataclass
class Weights:
    alpha: float = 0.5  # weight of z(log-prob per token)
    beta: float = 1.0  # weight of z(-JEPA-loss)
    gamma: float = 0.0  # weight of z(length in tokens)

    def as_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def answer_key(answer: str | None) -> str | None:
    """Canonical answer for voting: "1,000", "1000.0" and "1000" vote together."""
    from rjepa_core.validators.math import normalize_answer

    return normalize_answer(answer)


def vote_counts(group: Sequence[EvalCandidate]) -> list[int]:
    """How many candidates of the group share each candidate's answer (0 for no answer)."""
    keys = [answer_key(c.answer) for c in group]
    counts = Counter(k for k in keys if k is not None)
    return [counts[k] if k is not None else 0 for k in keys]


def _logprobs(group: Sequence[EvalCandidate], per_token: bool) -> np.ndarray:
    known = [c.logprob / (max(c.num_tokens, 1) if per_token else 1) for c in group if c.logprob is not None]
    worst = min(known) if known else 0.0
    return np.array(
        [(c.logprob / (max(c.num_tokens, 1) if per_token else 1)) if c.logprob is not None else worst for c in group],
        dtype=np.float64,
    )


def _required(group: Sequence[EvalCandidate], field: str, method: str) -> np.ndarray:
    values = [getattr(c, field) for c in group]
    if any(v is None for v in values):
        raise ValueError(f"method {method!r} needs `{field}` on every candidate: score them first")
    return np.asarray(values, dtype=np.float64)


def _rerank_scores(group: Sequence[EvalCandidate], weights: Weights) -> np.ndarray:
    from rjepa_core.inference.rerank import Candidate, RerankWeights, rerank
    from rjepa_core.jepa.scoring import ChainScore

    jepa = _required(group, "jepa_loss", "jepa/composite")
    cands = [Candidate(c.text, [], c.logprob, None, c.answer, c.num_tokens) for c in group]
    scores = [ChainScore(float(j), []) for j in jepa]
    result = rerank(cands, scores, RerankWeights(weights.alpha, weights.beta, weights.gamma))
    return np.array([d["composite"] for d in result.details], dtype=np.float64)


def _vote(method: str, group: Sequence[EvalCandidate], tau: float | None):
    from rjepa_core.inference.vote import DEFAULT_DROP_FRAC, filtered_majority, jepa_vote, vote_losses

    loss = _required(group, "jepa_loss", method)
    if method in ("jepa_last_filter_majority", "jepa_excess_filter_majority"):
        if any(c.step_surprise is None for c in group):
            raise ValueError(f"method {method!r} needs `step_surprise` on every candidate: score them first")
        z = [c.step_z for c in group] if method == "jepa_excess_filter_majority" else None
        loss = np.asarray(vote_losses(method, loss, [c.step_surprise for c in group], z))
    answers = [c.answer for c in group]
    if method == "jepa_vote":
        if tau is None:
            raise ValueError("method 'jepa_vote' needs its temperature tau (fitted on validation problems)")
        return jepa_vote(answers, loss, tau)
    return filtered_majority(answers, loss, DEFAULT_DROP_FRAC, [c.logprob for c in group])


def candidate_scores(
    method: str, group: Sequence[EvalCandidate], weights: Weights | None = None, tau: float | None = None
) -> np.ndarray:
    """Per-candidate scores of a scored method (higher = better), shape (K,).

    The votes score a candidate by its answer's share of the (weighted) vote.
    """
    if not group:
        raise ValueError("a problem needs at least one candidate")
    if method == "majority":
        return np.asarray(vote_counts(group), dtype=np.float64) / len(group)
    if method == "logprob_sum":
        return _logprobs(group, per_token=False)
    if method == "logprob_mean":
        return _logprobs(group, per_token=True)
    if method in ("verifier", "probe"):
        return _required(group, method, method)
    if method == "jepa":
        return -_required(group, "jepa_loss", method)
    if method == "composite":
        return _rerank_scores(group, weights or Weights())
    if method in VOTES:
        return np.asarray(_vote(method, group, tau).answer_share, dtype=np.float64)
    raise ValueError(f"unknown selection method {method!r}; scored methods are {SCORED_METHODS}")


def choose(
    method: str, group: Sequence[EvalCandidate], weights: Weights | None = None, tau: float | None = None
) -> int:
    """Index of the chosen candidate; majority breaks vote ties by the higher log-probability."""
    if method in VOTES:
        return _vote(method, group, tau).best_index
    scores = candidate_scores(method, group, weights)
    if method == "majority":
        lp = _logprobs(group, per_token=False)
        # lexicographic (votes, logprob): the largest answer cluster wins; among tied clusters the
        # one holding the most probable chain, and that chain is returned.
        return int(max(range(len(group)), key=lambda i: (scores[i], lp[i], -i)))
    return int(np.argmax(scores))  # first maximum: ties go to the earlier sample


def random_correctness(groups: Sequence[Sequence[EvalCandidate]], draws: int = 200, seed: int = 0) -> np.ndarray:
    """Per-problem correctness of a uniformly random pick, averaged over `draws` seeded draws, shape (P,)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(groups))
    for p, group in enumerate(groups):
        picks = rng.integers(0, len(group), size=draws)  # (draws,)
        correct = np.array([c.correct for c in group], dtype=np.float64)
        out[p] = correct[picks].mean()
    return out


def fit_weights(
    groups: Sequence[Sequence[EvalCandidate]],
    alphas: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    betas: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    gammas: Sequence[float] = (-0.5, -0.25, 0.0, 0.25, 0.5),
) -> tuple[Weights, float]:
    """Grid-search composite weights maximising rerank accuracy on held-out groups; returns (weights, accuracy).

    Ties keep the earliest grid point, with beta looped first from its largest value, so equal accuracy
    prefers more JEPA weight and then the simplest other terms.
    """
    groups = [g for g in groups if g]
    if not groups:
        raise ValueError("fit_weights needs at least one group of candidates with JEPA-losses")
    best, best_acc = Weights(0.0, 1.0, 0.0), -1.0
    for beta in sorted(betas, reverse=True):
        for alpha in alphas:
            for gamma in sorted(gammas, key=abs):
                if alpha == beta == gamma == 0:
                    continue
                w = Weights(alpha, beta, gamma)
                acc = float(np.mean([g[choose("composite", g, w)].correct for g in groups]))
                if acc > best_acc + 1e-12:
                    best, best_acc = w, acc
    return best, best_acc


TAU_GRID = (0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # relative temperatures tried


def fit_tau(
    groups: Sequence[Sequence[EvalCandidate]], loss_scale: float | None, grid: Sequence[float] = TAU_GRID
) -> tuple[float, float, list[dict[str, float]]]:
    """Relative temperature of `jepa_vote` maximising accuracy on held-out (validation) groups.

    Returns (tau_rel, accuracy, one row per grid value). Ties go to the larger tau (closer to the
    majority vote: the safer choice when validation cannot tell them apart). tau in loss units is
    `relative_tau(tau_rel, loss_scale)`.
    """
    from rjepa_core.inference.vote import relative_tau

    groups = [g for g in groups if g]
    if not groups:
        raise ValueError("fit_tau needs at least one validation group of candidates with JEPA-losses")
    rows, best, best_acc = [], None, -1.0
    for t in sorted(grid, reverse=True):
        tau = relative_tau(t, loss_scale)
        acc = float(np.mean([g[choose("jepa_vote", g, tau=tau)].correct for g in groups]))
        rows.append({"tau_rel": float(t), "accuracy": acc})
        if acc > best_acc + 1e-12:
            best, best_acc = float(t), acc
    return best, best_acc, sorted(rows, key=lambda r: r["tau_rel"])


def _loss_std(groups: Sequence[Sequence[EvalCandidate]]) -> float | None:
    losses = [c.jepa_loss for g in groups for c in g if c.jepa_loss is not None]
    return float(np.std(losses)) if len(losses) > 1 else None


def cross_validated_selection(
    groups: Sequence[Sequence[EvalCandidate]], folds: Sequence[int], grid: Sequence[float] = TAU_GRID
) -> dict[str, object]:
    """Accuracy of the selection methods on cross-validation held-out groups (no test data).

    groups: one problem's JEPA-scored candidates each, scored by the model that did not see that
    problem's fold; folds: the fold of each group. Settings a method fits (the JEPA vote's tau_rel) are
    fitted on the other folds' groups and applied to each fold, so every accuracy is held out twice
    over. The loss scale that turns tau_rel into loss units is each fold's own spread of candidate
    losses (label-free), and the excess-surprise filter's position normaliser is fitted (label-free) on
    the other folds' candidates, as a checkpoint's is on its validation split; without step surprises on
    every candidate that method is left out. `jepa_vote_by_tau` is the whole curve, for reading, not for
    choosing.
    """
    from rjepa_core.inference.vote import relative_tau
    from rjepa_core.jepa.normalisation import SurpriseNorm

    if len(groups) != len(folds):
        raise ValueError(f"{len(groups)} groups but {len(folds)} fold ids")
    groups = [list(g) for g in groups]
    by_fold: dict[int, list[int]] = {}
    for i, f in enumerate(folds):
        by_fold.setdefault(int(f), []).append(i)
    scale = {f: _loss_std([groups[i] for i in idx]) for f, idx in by_fold.items()}
    stepwise = all(c.step_surprise for g in groups for c in g)
    shown = [m for m in VOTES if stepwise or m not in ("jepa_last_filter_majority", "jepa_excess_filter_majority")]
    picks: dict[str, list[bool]] = {m: [False] * len(groups) for m in ("majority", "logprob_sum", "jepa", *shown)}
    fitted: dict[str, float] = {}
    for f, idx in by_fold.items():
        others = [groups[i] for g, ids in by_fold.items() if g != f for i in ids]
        t = fit_tau(others, _loss_std(others), grid)[0] if others else 1.0
        fitted[str(f)] = t
        tau = relative_tau(t, scale[f])
        if "jepa_excess_filter_majority" in shown:
            reference = others or [groups[i] for i in idx]  # one fold only: its own candidates (no labels read)
            norm = SurpriseNorm.fit([c.step_surprise for g in reference for c in g])
            held = [[dataclasses.replace(c, step_z=norm.z(c.step_surprise)) for c in groups[i]] for i in idx]
        for j, i in enumerate(idx):
            g = groups[i]
            for m in shown:
                if m == "jepa_vote":
                    picks[m][i] = bool(g[choose(m, g, tau=tau)].correct)
                elif m == "jepa_excess_filter_majority":
                    picks[m][i] = bool(held[j][choose(m, held[j])].correct)
                else:
                    picks[m][i] = bool(g[choose(m, g)].correct)
            for m in ("majority", "logprob_sum", "jepa"):
                picks[m][i] = bool(g[choose(m, g)].correct)
    curve = []
    for t in grid:
        ok = [
            bool(groups[i][choose("jepa_vote", groups[i], tau=relative_tau(t, scale[f]))].correct)
            for f, idx in by_fold.items()
            for i in idx
        ]
        curve.append({"tau_rel": float(t), "accuracy": float(np.mean(ok))})
    out: dict[str, object] = {m: float(np.mean(v)) for m, v in picks.items()}
    out.update(n_problems=len(groups), jepa_vote_tau_rel_by_fold=fitted, jepa_vote_by_tau=curve)
    return out

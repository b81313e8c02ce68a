"""Deterministic JEPA scoring of chains (SPEC F10): per-step surprise and aggregate JEPA-loss.

    >>> import numpy as np
    >>> from rjepa_core.config import ScoreConfig, rjepa_tiny
    >>> from rjepa_core.jepa.model import RJEPA
    >>> scorer = JEPAScorer(RJEPA(rjepa_tiny(hidden_size=16)), ScoreConfig())
    >>> chains = [np.random.randn(n, 16).astype("float16") for n in (1, 4)]
    >>> [len(s.step_surprise) for s in scorer.score(chains, ["math", "code"])]
    [1, 4]

Every step is masked in turn (leave_one_out: the other steps are the context), every window of
`window` consecutive steps (window mode), every suffix (prefix mode: a step is seen only from the steps
before it, as the student wrote it) or all steps at once (question mode: from the question latent alone);
a step's surprise is the mean over the masked sets that cover it. All (chain, masked set) variants of all
candidates go through one batched forward, in chunks of `chunk_size`, with the model in eval mode. A step's
surprise is the distance (the training loss kind, L1 by default) between its prediction and its target-encoder
embedding computed on the whole chain; the chain's JEPA-loss is the mean (or max) of its step surprises.

With a question token (`model.question_token`, the default config), every step is also predicted
from the question latent, so a single-step chain's surprise says how unexpected that step is for
this problem. Without one (or without a question latent), a single-step chain's step is predicted
from the register token alone (the domain and the position): how typical it is of first steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rjepa_core.config import ScoreConfig
from rjepa_core.jepa.calibration import Calibration
from rjepa_core.jepa.checkpoint import LoadedCheckpoint
from rjepa_core.jepa.collate import domain_index, pad_batch
from rjepa_core.jepa.losses import token_loss
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.normalisation import DEFAULT_FIRST_ABOVE, SurpriseNorm, first_above


@dataclass
class ChainScore:
    jepa_loss: float  # aggregate surprise of the chain (lower = more lawful)
    step_surprise: list[float]  # one surprise per step
    score01: float | None = None  # calibrated lawfulness in [0, 1] (None without calibration)
    step_z: list[float] | None = None  # position-normalised surprise (None without a SurpriseNorm)
    first_unlawful_step: int | None = None  # first step with step_z above the localisation threshold (None w/o z)

    @property
    def most_surprising_step(self) -> int:
        """argmax of the position-normalised surprise when there is one (raw argmax favours some positions)."""
        return int(np.argmax(self.step_z if self.step_z is not None else self.step_surprise))


def aggregate(steps: np.ndarray, how: str) -> float:
    """A chain's JEPA-loss from its step surprises: mean, max, or top2 (mean of the two largest)."""
    if how == "max":
        return float(steps.max())
    if how == "top2":
        return float(np.sort(steps)[-2:].mean())
    return float(steps.mean())


def masked_sets(n: int, cfg: ScoreConfig) -> list[list[int]]:
    """The target sets scored for a chain of n steps."""
    if n == 1:
        return [[0]]
    if cfg.mode == "leave_one_out":
        return [[i] for i in range(n)]
    if cfg.mode == "prefix":
        return [list(range(i, n)) for i in range(n)]
    if cfg.mode == "question":
        return [list(range(n))]
    w = min(cfg.window, n - 1)
    return [list(range(i, i + w)) for i in range(n - w + 1)]


class _ChainScoring:
    """What turns a chain's step surprises into its `ChainScore`: the score config's aggregate, the calibration,
    the surprise norm and the localisation threshold (shared by `JEPAScorer` and `EnsembleScorer`)."""

    def _set_inference(
        self,
        cfg: ScoreConfig,
        calibration: Calibration | None,
        surprise_norm: SurpriseNorm | None,
        localisation_threshold: float,
    ) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.surprise_norm = surprise_norm
        # z threshold of `first_unlawful_step` (fitted into the checkpoint meta's "localisation")
        self.localisation_threshold = float(localisation_threshold)
        self.localisation_source: str | None = None  # where the threshold came from (None: the default)

    def _chain_score(self, steps: np.ndarray) -> ChainScore:
        agg = aggregate(steps, self.cfg.aggregate)
        s01 = self.calibration.score01(agg) if self.calibration is not None else None
        raw = [float(x) for x in steps]
        z = self.surprise_norm.z(raw) if self.surprise_norm is not None else None
        first = first_above(z, self.localisation_threshold) if z is not None else None
        return ChainScore(agg, raw, s01, z, first)


class JEPAScorer(_ChainScoring):
    def __init__(
        self,
        model: RJEPA,
        cfg: ScoreConfig | None = None,
        device: str | torch.device = "cpu",
        calibration: Calibration | None = None,
        loss_kind: str = "l1",
        surprise_norm: SurpriseNorm | None = None,
        localisation_threshold: float = DEFAULT_FIRST_ABOVE,
    ):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.loss_kind = loss_kind
        self._set_inference((cfg or ScoreConfig()).validate(), calibration, surprise_norm, localisation_threshold)

    @classmethod
    def from_checkpoint(cls, ck: LoadedCheckpoint, device: str | torch.device = "cpu") -> JEPAScorer:
        """Scorer with the checkpoint's score config, loss kind and (if fitted) calibration, surprise norm and
        localisation threshold."""
        cal, norm = ck.meta.get("calibration"), ck.meta.get("surprise_norm")
        calibration = Calibration.from_dict(cal) if cal else None
        surprise_norm = SurpriseNorm.from_dict(norm) if norm else None
        loc = ck.meta.get("localisation") or {}
        scorer = cls(
            ck.model,
            ck.config.score,
            device,
            calibration,
            ck.config.loss.kind,
            surprise_norm,
            loc.get("threshold", DEFAULT_FIRST_ABOVE),
        )
        scorer.localisation_source = loc.get("source")
        return scorer

    def _check(self, seqs: Sequence[np.ndarray]) -> None:
        m = self.model.cfg
        for i, h in enumerate(seqs):
            if h.ndim != 2 or h.shape[0] < 1:
                raise ValueError(f"chain {i}: expected latents of shape (num_steps >= 1, hidden), got {h.shape}")
            if h.shape[1] != m.hidden_size:
                raise ValueError(
                    f"chain {i}: latent width {h.shape[1]} but the checkpoint was trained on hidden size "
                    f"{m.hidden_size}: score latents of the same student, or through that llm's calibration adapter "
                    "(`rjepa_core.transfer.AdaptedRJEPA` around the model, from the `calibration_adapter` asset)"
                )
            if h.shape[0] > m.max_steps:
                raise ValueError(
                    f"chain {i} has {h.shape[0]} steps, above the model's max_steps={m.max_steps}: "
                    "segment it into fewer steps"
                )

    @torch.no_grad()
    def _targets(self, seqs: Sequence[np.ndarray], dom: list[int], qs: list[np.ndarray | None]) -> list[torch.Tensor]:
        """Target embeddings of every step of every chain: list of (n_i, D)."""
        out: list[torch.Tensor] = []
        size = self.cfg.chunk_size
        for s in range(0, len(seqs), size):
            chunk = list(seqs[s : s + size])
            b = pad_batch(chunk, dom[s : s + size], [[] for _ in chunk], questions=qs[s : s + size]).to(self.device)
            z = self.model.encode_targets(b.H, b.valid, b.domain_ids, None, b.Q, b.q_valid)  # (C, S, D)
            out += [z[i, : h.shape[0]].float().cpu() for i, h in enumerate(chunk)]
        return out

    def _questions(self, n: int, questions: Sequence[np.ndarray | None] | None) -> list[np.ndarray | None]:
        if questions is None:
            return [None] * n
        if len(questions) != n:
            raise ValueError(f"{n} chains but {len(questions)} question latents")
        width = self.model.cfg.hidden_size
        out = []
        for i, q in enumerate(questions):
            if q is not None:
                q = np.asarray(q, dtype=np.float32).reshape(-1)
                if q.shape[0] != width or not np.isfinite(q).all():
                    raise ValueError(
                        f"chain {i}: question latent must be {width} finite numbers (the student's width), "
                        f"got {q.shape[0]}"
                    )
            out.append(q if self.model.cfg.question_token else None)
        return out

    def _prepare(self, seqs, domains, questions) -> tuple[list[int], list[np.ndarray | None], list[torch.Tensor]]:
        """Checked inputs: domain ids, question latents (None where unused) and every step's target embedding."""
        self._check(seqs)
        names = list(domains) if domains is not None else [None] * len(seqs)
        if len(names) != len(seqs):
            raise ValueError(f"{len(seqs)} chains but {len(names)} domains")
        qs = self._questions(len(seqs), questions)
        dom = [domain_index(self.model.cfg.domains, d) for d in names]
        return dom, qs, self._targets(seqs, dom, qs)

    @torch.no_grad()
    def score(
        self,
        seqs: Sequence[np.ndarray],
        domains: Sequence[str | None] | None = None,
        questions: Sequence[np.ndarray | None] | None = None,
    ) -> list[ChainScore]:
        """Score chains (each (num_steps, hidden_size)); domains default to "other".

        questions: one question latent (hidden_size,) or None per chain; used when the model has a
        question token (ignored otherwise).
        """
        if not seqs:
            return []
        dom, qs, targets = self._prepare(seqs, domains, questions)
        variants = [(c, t) for c, h in enumerate(seqs) for t in masked_sets(h.shape[0], self.cfg)]
        sums = [np.zeros(h.shape[0]) for h in seqs]
        counts = [np.zeros(h.shape[0]) for h in seqs]
        for (c, t), surprise in zip(variants, self._variant_surprise(seqs, dom, qs, targets, variants), strict=True):
            sums[c][t] += surprise
            counts[c][t] += 1
        return [self._chain_score(sm / np.maximum(ct, 1)) for sm, ct in zip(sums, counts, strict=True)]

    def _variant_surprise(self, seqs, dom, qs, targets, variants) -> list[np.ndarray]:
        """Surprise of each (chain, masked steps) variant's masked steps, predicted from the chain's other steps."""
        out: list[np.ndarray] = []
        size = self.cfg.chunk_size
        for s in range(0, len(variants), size):
            chunk = variants[s : s + size]
            b = pad_batch(
                [seqs[c] for c, _ in chunk],
                [dom[c] for c, _ in chunk],
                [t for _, t in chunk],
                questions=[qs[c] for c, _ in chunk],
            ).to(self.device)
            pred = self.model.predict(
                b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid, None, b.Q, b.q_valid
            )  # (V, T, D)
            tg = torch.zeros_like(pred)  # (V, T, D)
            for v, (c, t) in enumerate(chunk):
                tg[v, : len(t)] = targets[c][t].to(self.device)
            surprise = token_loss(pred.float(), tg, self.loss_kind).cpu().numpy()  # (V, T)
            out += [surprise[v, : len(t)] for v, (_, t) in enumerate(chunk)]
        return out

    @torch.no_grad()
    def last_step_surprise(
        self,
        seqs: Sequence[np.ndarray],
        domains: Sequence[str | None] | None = None,
        questions: Sequence[np.ndarray | None] | None = None,
    ) -> list[float]:
        """Surprise of each chain's last step predicted from the steps before it (and the question latent):
        how unexpected the newest step of a chain being written is (NUDGE)."""
        if not seqs:
            return []
        dom, qs, targets = self._prepare(seqs, domains, questions)
        variants = [(c, [h.shape[0] - 1]) for c, h in enumerate(seqs)]
        return [float(x[0]) for x in self._variant_surprise(seqs, dom, qs, targets, variants)]


@torch.no_grad()
def predict_masked(
    model: RJEPA, H: np.ndarray, idx: Sequence[int], domain: str | None = None, question: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for the steps `idx` of one chain from its other steps (and its question latent, when the
    model has a question token): (T, D) JEPA space, (T, Dh) student space.

    Indices may point past the chain's end (up to max_steps - 1) to predict missing future steps (plan).
    """
    idx = sorted(set(int(i) for i in idx))
    if not idx or min(idx) < 0 or max(idx) >= model.cfg.max_steps:
        raise ValueError(f"indices must be in [0, {model.cfg.max_steps}), got {list(idx)}")
    device = next(model.parameters()).device
    n = max(H.shape[0], max(idx) + 1)
    full = np.zeros((n, H.shape[1]), dtype=np.float32)
    full[: H.shape[0]] = H
    q = [question if model.cfg.question_token else None]
    b = pad_batch([full], [domain_index(model.cfg.domains, domain)], [idx], questions=q).to(device)
    model.eval()
    pred = model.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid, None, b.Q, b.q_valid)
    hidden = model.to_hidden(pred)  # (1, T, Dh)
    return pred[0].float().cpu().numpy(), hidden[0].float().cpu().numpy()


class EnsembleScorer(_ChainScoring):
    """Several R-JEPAs of one student (e.g. trained with different seeds) scored as one model: each step's
    surprise is the mean of the models' surprises, and the chain's JEPA-loss is aggregated from those means.

    The ensemble has its own calibration, surprise norm and localisation threshold (its averaged surprises
    are not any member's): fit them on held-out chains with `eval.evaluation.fit_selection(ensemble, ...)`.
    Scores like a `JEPAScorer` (`score`), so the eval report and the selection methods take it as they are.
    """

    def __init__(
        self,
        scorers: Sequence[JEPAScorer],
        calibration: Calibration | None = None,
        surprise_norm: SurpriseNorm | None = None,
        localisation_threshold: float = DEFAULT_FIRST_ABOVE,
    ):
        if len(scorers) < 2:
            raise ValueError(f"an ensemble needs at least 2 scorers, got {len(scorers)}")
        first = scorers[0]
        for i, other in enumerate(scorers[1:], start=1):
            if other.model.cfg.hidden_size != first.model.cfg.hidden_size:
                raise ValueError(
                    f"scorer {i} was trained on latents of width {other.model.cfg.hidden_size}, scorer 0 on "
                    f"{first.model.cfg.hidden_size}: ensemble models of the same student and layer"
                )
            if (other.cfg.aggregate, other.cfg.mode) != (first.cfg.aggregate, first.cfg.mode):
                raise ValueError(f"scorer {i} scores chains differently from scorer 0: use one score config")
        self.scorers = list(scorers)
        self._set_inference(first.cfg, calibration, surprise_norm, localisation_threshold)

    def score(
        self,
        seqs: Sequence[np.ndarray],
        domains: Sequence[str | None] | None = None,
        questions: Sequence[np.ndarray | None] | None = None,
    ) -> list[ChainScore]:
        per_model = [s.score(seqs, domains, questions) for s in self.scorers]
        return [
            self._chain_score(np.mean([c.step_surprise for c in chain], axis=0))
            for chain in zip(*per_model, strict=True)
        ]

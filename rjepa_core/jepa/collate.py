"""Padded, masked batches of variable-length chains (SPEC F7).

    >>> import numpy as np
    >>> from rjepa_core.config import MaskConfig
    >>> from rjepa_core.jepa.masks import make_masker
    >>> collate = Collator(make_masker(MaskConfig()), seed=0)
    >>> chains = [Chain(np.random.randn(n, 8).astype("float16"), "math") for n in (3, 5)]
    >>> b = collate(chains, step=0)
    >>> b.H.shape, b.tgt_idx.shape[0], bool(b.ctx_valid.any(1).all())
    (torch.Size([2, 5, 8]), 2, True)

Masks depend only on (seed, step, the chains in the batch): the generator is reseeded from
`seed` and the step index for every batch, so a resumed run draws exactly the masks the
uninterrupted run would have drawn without replaying anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from rjepa_core.config import DEFAULT_DOMAINS
from rjepa_core.jepa.masks import Masker

log = logging.getLogger(__name__)


@dataclass
class Chain:
    H: np.ndarray  # (num_steps, hidden_size) float16/float32 step latents
    domain: str = "other"  # domain name; unknown names map to "other"
    is_valid: bool = True  # validated chain (JEPA target) or negative
    q: np.ndarray | None = None  # (hidden_size,) question latent: the student's state before the first step
    group: str | None = None  # problem id: chains of one problem are the pairs of the energy margin


def as_chain(x: Any) -> Chain:
    """Chain from a Chain, a LatentSequence (anything with .H/.domain/.is_valid/.Q) or a bare array."""
    if isinstance(x, Chain):
        return x
    if isinstance(x, np.ndarray):
        return Chain(x)
    if getattr(x, "H", None) is None:
        raise ValueError(f"{type(x).__name__} has no latents H: load the shard's tensors before training/scoring")
    return Chain(
        x.H,
        getattr(x, "domain", "other"),
        bool(getattr(x, "is_valid", True)),
        getattr(x, "Q", None),
        getattr(x, "problem_id", None),
    )


@dataclass
class Batch:
    H: torch.Tensor  # (B, S, Dh) float32 student latents, zero-padded
    valid: torch.Tensor  # (B, S) bool: real steps
    domain_ids: torch.Tensor  # (B,) long
    ctx_valid: torch.Tensor  # (B, S) bool: visible steps (subset of valid)
    tgt_idx: torch.Tensor  # (B, T) long: masked step indices, padded with 0
    tgt_valid: torch.Tensor  # (B, T) bool: real targets
    is_valid: torch.Tensor  # (B,) bool: validated chain (regression target) vs negative
    lengths: torch.Tensor  # (B,) long: steps per chain
    Q: torch.Tensor  # (B, Dh) float32 question latents, zero where missing
    q_valid: torch.Tensor  # (B,) bool: the chain has a question latent
    group: torch.Tensor  # (B,) long: index of the chain's problem within the batch, -1 when unknown

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def size(self) -> int:
        return int(self.H.shape[0])


def domain_index(domains: Sequence[str], name: str | None) -> int:
    return domains.index(name) if name in domains else domains.index("other")


def pad_batch(
    Hs: Sequence[np.ndarray],
    domain_ids: Sequence[int],
    targets: Sequence[Sequence[int]],
    is_valid: Sequence[bool] | None = None,
    questions: Sequence[np.ndarray | None] | None = None,
    groups: Sequence[str | None] | None = None,
) -> Batch:
    """Batch from per-chain latents, target index lists and optional question latents; non-targets are visible."""
    B = len(Hs)
    S = max(h.shape[0] for h in Hs)
    T = max(max(len(t) for t in targets), 1)
    Dh = Hs[0].shape[1]
    H = torch.zeros(B, S, Dh)  # (B, S, Dh)
    valid = torch.zeros(B, S, dtype=torch.bool)  # (B, S)
    ctx_valid = torch.zeros(B, S, dtype=torch.bool)  # (B, S)
    tgt_idx = torch.zeros(B, T, dtype=torch.long)  # (B, T)
    tgt_valid = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
    for i, (h, tg) in enumerate(zip(Hs, targets, strict=True)):
        n = h.shape[0]
        if h.shape[1] != Dh:
            raise ValueError(f"chain {i} has latent width {h.shape[1]}, the batch has {Dh}: mixed students")
        H[i, :n] = torch.from_numpy(np.asarray(h, dtype=np.float32))
        valid[i, :n] = True
        ctx_valid[i, :n] = True
        if tg:
            t = torch.tensor(list(tg), dtype=torch.long)  # (k,)
            ctx_valid[i, t] = False
            tgt_idx[i, : len(t)] = t
            tgt_valid[i, : len(t)] = True
    Q = torch.zeros(B, Dh)  # (B, Dh)
    q_valid = torch.zeros(B, dtype=torch.bool)  # (B,)
    for i, q in enumerate(questions if questions is not None else []):
        if q is None:
            continue
        q = np.asarray(q, dtype=np.float32).reshape(-1)
        if q.shape[0] != Dh:
            raise ValueError(f"chain {i} has a question latent of width {q.shape[0]}, its steps have {Dh}")
        Q[i] = torch.from_numpy(q)
        q_valid[i] = True
    flags = torch.tensor(list(is_valid) if is_valid is not None else [True] * B, dtype=torch.bool)  # (B,)
    lengths = valid.sum(1)  # (B,)
    doms = torch.tensor(list(domain_ids), dtype=torch.long)  # (B,)
    names: dict[str, int] = {}
    group = torch.tensor(
        [-1 if g is None else names.setdefault(g, len(names)) for g in (groups or [None] * B)], dtype=torch.long
    )  # (B,)
    return Batch(H, valid, doms, ctx_valid, tgt_idx, tgt_valid, flags, lengths, Q, q_valid, group)


def step_seed(seed: int, step: int) -> int:
    """Generator seed of one batch: a pure function of the run seed and the step index."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + 17) % (2**63 - 1)


class Collator:
    def __init__(
        self,
        masker: Masker,
        seed: int = 0,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        max_steps: int = 64,
        use_questions: bool = False,
    ):
        self.masker = masker
        self.use_questions = use_questions  # question latents are context (the model has a question token)
        self.seed = int(seed)
        self.domains = list(domains)
        self.max_steps = max_steps
        self.step = 0  # next step index used when the caller gives none
        self.skipped = 0  # chains dropped for being shorter than masker.min_length
        self.truncated = 0  # chains cut to max_steps

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(step_seed(self.seed, step))

    def __call__(self, items: Sequence[Any], step: int | None = None) -> Batch:
        if step is None:
            step = self.step
        self.step = step + 1
        g = self.generator(step)
        Hs, doms, targets, flags, qs, groups = [], [], [], [], [], []
        for item in items:
            c = as_chain(item)
            h = c.H
            if h.shape[0] > self.max_steps:
                self.truncated += 1
                h = h[: self.max_steps]
            q = c.q if self.use_questions else None
            extra = int(q is not None)
            if h.shape[0] < self.masker.length_needed(extra):
                self.skipped += 1
                continue
            Hs.append(h)
            doms.append(domain_index(self.domains, c.domain))
            targets.append(self.masker(h.shape[0], g, extra))
            flags.append(c.is_valid)
            qs.append(q)
            groups.append(c.group)
        if not Hs:
            raise ValueError(
                f"every chain of this batch is shorter than {self.masker.min_length} steps: "
                "filter chains with fewer steps before training"
            )
        if self.skipped and self.skipped % 100 == 1:
            log.warning("skipped %d chain(s) too short to mask so far", self.skipped)
        return pad_batch(Hs, doms, targets, flags, qs, groups)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "step": self.step, "skipped": self.skipped, "truncated": self.truncated}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.step = int(state["seed"]), int(state["step"])
        self.skipped, self.truncated = int(state["skipped"]), int(state["truncated"])

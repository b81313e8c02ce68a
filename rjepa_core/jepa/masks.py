"""Step maskers (SPEC F7): which steps of a chain the predictor must guess.

    >>> import torch
    >>> from rjepa_core.config import MaskConfig
    >>> masker = make_masker(MaskConfig(kind="contiguous"))
    >>> g = torch.Generator().manual_seed(0)
    >>> tgt = masker(6, g)          # sorted target indices, e.g. [2, 3, 4]
    >>> 1 <= len(tgt) <= 5
    True

Every masker returns a sorted, non-empty list of target indices that leaves at least
`min_context` steps visible, so it needs chains of at least `min_context + 1` steps
(`masker.min_length`); the collator skips shorter chains and counts them. A question latent counts
as visible context (`extra_context=1`): a one-step chain with its question can then be trained on.
Draws come only from the torch.Generator passed in, so a seeded generator reproduces the same masks.

- random: k steps anywhere, k = round(r * n), r ~ U[ratio_min, ratio_max]
- contiguous (default): one block of k consecutive steps, same k
- hierarchical: keep the first and last step, mask everything between (n = 2: mask the last step)
- conclusion: mask the last `conclusion_steps` steps
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from rjepa_core.config import MaskConfig


def _uniform(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


class Masker(ABC):
    kind = "base"

    def __init__(self, cfg: MaskConfig):
        self.cfg = cfg.validate()

    @property
    def min_length(self) -> int:
        return self.length_needed(0)

    def length_needed(self, extra_context: int = 0) -> int:
        """Fewest steps a chain needs when `extra_context` always-visible items come with it."""
        return max(1, self.cfg.min_context + 1 - extra_context)

    def max_targets(self, n: int, extra: int = 0) -> int:
        return min(n, n + extra - self.cfg.min_context)

    def num_targets(self, n: int, g: torch.Generator, extra: int = 0) -> int:
        r = self.cfg.ratio_min + _uniform(g) * (self.cfg.ratio_max - self.cfg.ratio_min)
        return min(max(round(r * n), 1), self.max_targets(n, extra))

    @abstractmethod
    def targets(self, n: int, g: torch.Generator, extra: int = 0) -> list[int]:
        """Target indices of a chain of n >= length_needed(extra) steps with `extra` always-visible items."""

    def __call__(self, n: int, g: torch.Generator, extra_context: int = 0) -> list[int]:
        if n < self.length_needed(extra_context):
            raise ValueError(
                f"{self.kind} masking needs chains of at least {self.length_needed(extra_context)} steps "
                f"(min_context={self.cfg.min_context} + 1 target, {extra_context} question latent), got {n}: "
                "filter short chains first"
            )
        return sorted(self.targets(n, g, extra_context))


class RandomMasker(Masker):
    kind = "random"

    def targets(self, n: int, g: torch.Generator, extra: int = 0) -> list[int]:
        k = self.num_targets(n, g, extra)
        return torch.randperm(n, generator=g)[:k].tolist()


class ContiguousMasker(Masker):
    kind = "contiguous"

    def targets(self, n: int, g: torch.Generator, extra: int = 0) -> list[int]:
        k = self.num_targets(n, g, extra)
        start = _randint(0, n - k, g)
        return list(range(start, start + k))


class HierarchicalMasker(Masker):
    kind = "hierarchical"

    def targets(self, n: int, g: torch.Generator, extra: int = 0) -> list[int]:
        if n <= 2:
            return [n - 1]
        middle = list(range(1, n - 1))
        return middle[: max(1, self.max_targets(n, extra))]


class ConclusionMasker(Masker):
    kind = "conclusion"

    def targets(self, n: int, g: torch.Generator, extra: int = 0) -> list[int]:
        k = min(self.cfg.conclusion_steps, self.max_targets(n, extra))
        return list(range(n - k, n))


MASKERS: dict[str, type[Masker]] = {
    m.kind: m for m in (RandomMasker, ContiguousMasker, HierarchicalMasker, ConclusionMasker)
}


def make_masker(cfg: MaskConfig) -> Masker:
    cfg.validate()
    return MASKERS[cfg.kind](cfg)

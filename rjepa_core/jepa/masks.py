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
(`masker.min_length`); the collator skips shorter chains and counts them. Draws come only from the
torch.Generator passed in, so a seeded generator reproduces the same masks.

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
        return self.cfg.min_context + 1

    def max_targets(self, n: int) -> int:
        return n - self.cfg.min_context

    def num_targets(self, n: int, g: torch.Generator) -> int:
        r = self.cfg.ratio_min + _uniform(g) * (self.cfg.ratio_max - self.cfg.ratio_min)
        return min(max(round(r * n), 1), self.max_targets(n))

    @abstractmethod
    def targets(self, n: int, g: torch.Generator) -> list[int]:
        """Target indices of a chain of n >= min_length steps."""

    def __call__(self, n: int, g: torch.Generator) -> list[int]:
        if n < self.min_length:
            raise ValueError(
                f"{self.kind} masking needs chains of at least {self.min_length} steps (min_context="
                f"{self.cfg.min_context} + 1 target), got {n}: filter short chains first"
            )
        return sorted(self.targets(n, g))


class RandomMasker(Masker):
    kind = "random"

    def targets(self, n: int, g: torch.Generator) -> list[int]:
        k = self.num_targets(n, g)
        return torch.randperm(n, generator=g)[:k].tolist()


class ContiguousMasker(Masker):
    kind = "contiguous"

    def targets(self, n: int, g: torch.Generator) -> list[int]:
        k = self.num_targets(n, g)
        start = _randint(0, n - k, g)
        return list(range(start, start + k))


class HierarchicalMasker(Masker):
    kind = "hierarchical"

    def targets(self, n: int, g: torch.Generator) -> list[int]:
        if n == 2:
            return [1]
        middle = list(range(1, n - 1))
        return middle[: max(1, self.max_targets(n))]


class ConclusionMasker(Masker):
    kind = "conclusion"

    def targets(self, n: int, g: torch.Generator) -> list[int]:
        k = min(self.cfg.conclusion_steps, self.max_targets(n))
        return list(range(n - k, n))


MASKERS: dict[str, type[Masker]] = {
    m.kind: m for m in (RandomMasker, ContiguousMasker, HierarchicalMasker, ConclusionMasker)
}


def make_masker(cfg: MaskConfig) -> Masker:
    cfg.validate()
    return MASKERS[cfg.kind](cfg)

"""Learnable synthetic chains for R-JEPA tests: H_t = W (A^t h0) + noise, A a fixed rotation.

    >>> chains = lawful_chains(10, steps=6, hidden=32, seed=0)
    >>> chains[0].H.shape, chains[0].H.dtype
    ((6, 32), dtype('float16'))

Every chain follows the same linear dynamics in a low-rank latent space, so a masked step is
predictable from the visible ones; `shuffled` breaks the order and `perturbed` replaces one step.
"""

from __future__ import annotations

import numpy as np

from rjepa_core.jepa.collate import Chain

RANK = 8


def _system(hidden: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    q, _ = np.linalg.qr(rng.normal(size=(RANK, RANK)))
    angles = rng.uniform(0.3, 0.8, size=RANK // 2)
    A = np.zeros((RANK, RANK))
    for i, a in enumerate(angles):
        A[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    A = q @ A @ q.T
    W = rng.normal(size=(RANK, hidden)) / np.sqrt(RANK)
    W[:, 0] *= 20.0  # an outlier dimension, as real student latents have
    return A, W


def lawful_array(rng: np.random.Generator, steps: int, hidden: int, noise: float = 0.05) -> np.ndarray:
    A, W = _system(hidden)
    z = rng.normal(size=RANK)
    out = []
    for _ in range(steps):
        out.append(z @ W + noise * rng.normal(size=hidden))
        z = A @ z
    return np.stack(out).astype(np.float16)


def lawful_chains(n: int, steps: int = 6, hidden: int = 32, seed: int = 0, domain: str = "math") -> list[Chain]:
    rng = np.random.default_rng(seed)
    return [Chain(lawful_array(rng, steps, hidden), domain, True) for _ in range(n)]


def shuffled(chain: Chain, seed: int = 0) -> Chain:
    rng = np.random.default_rng(seed)
    n = chain.H.shape[0]
    perm = rng.permutation(n)
    while n > 1 and (perm == np.arange(n)).all():
        perm = rng.permutation(n)
    return Chain(chain.H[perm].copy(), chain.domain, False)


def perturbed(chain: Chain, step: int, seed: int = 0) -> Chain:
    """The chain with one step replaced by the same step of an unrelated lawful chain."""
    rng = np.random.default_rng(seed + 99)
    other = lawful_array(rng, chain.H.shape[0], chain.H.shape[1])
    H = chain.H.copy()
    H[step] = other[step]
    return Chain(H, chain.domain, False)

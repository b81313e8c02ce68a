"""Supervised baselines on pooled step latents (SPEC F15): an MLP verifier and a linear probe.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> H = [rng.normal(size=(3, 8)) + (1.0 if i % 2 else -1.0) for i in range(40)]
    >>> y = [bool(i % 2) for i in range(40)]
    >>> probe = LatentClassifier("probe").fit(H, y)
    >>> bool(probe.predict_proba(H[:2])[1] > probe.predict_proba(H[:2])[0])
    True

Both see the same features: the mean over steps of the chain's latents, standardised on the training
chains. They are what JEPA reranking must beat to show the world model adds something beyond "a
classifier on the same latents, given correctness labels" (which JEPA never sees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KINDS = ("verifier", "probe")


@dataclass
class ClassifierConfig:
    hidden: int = 64  # MLP verifier hidden units (one hidden layer)
    l2: float = 1e-3  # L2 penalty of the MLP (sklearn alpha)
    max_iter: int = 300  # optimiser iterations
    probe_c: float = 1.0  # inverse L2 strength of the logistic-regression probe
    seed: int = 0  # initialisation seed (the MLP is deterministic given it)


def pool(H: np.ndarray) -> np.ndarray:
    """Mean over steps in float32: (num_steps, hidden) -> (hidden,)."""
    arr = np.asarray(H, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"expected latents of shape (num_steps >= 1, hidden), got {arr.shape}")
    return arr.mean(axis=0)


def features(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled features of many chains, (N, hidden)."""
    return np.stack([pool(h) for h in seqs])


class LatentClassifier:
    """P(chain correct) from pooled latents: kind "verifier" (MLP) or "probe" (logistic regression)."""

    def __init__(self, kind: str, cfg: ClassifierConfig | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown classifier kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.cfg = cfg or ClassifierConfig()
        self.model = None
        self.num_train = 0

    def _build(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        c = self.cfg
        if self.kind == "probe":
            head = LogisticRegression(C=c.probe_c, max_iter=2000)
        else:
            head = MLPClassifier(
                hidden_layer_sizes=(c.hidden,), alpha=c.l2, max_iter=c.max_iter, random_state=c.seed, tol=1e-4
            )
        return make_pipeline(StandardScaler(), head)

    def fit(self, seqs: Sequence[np.ndarray], labels: Sequence[bool]) -> LatentClassifier:
        """Train on chains' latents and correctness; needs both correct and incorrect chains."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        y = np.asarray(labels, dtype=bool)
        if len(seqs) != y.size:
            raise ValueError(f"{len(seqs)} chains but {y.size} labels")
        if y.all() or not y.any():
            raise ValueError(
                f"the {self.kind} needs both correct and incorrect training chains (got {int(y.sum())} correct "
                f"of {y.size}): sample more student chains on the train split"
            )
        self.model = self._build()
        with warnings.catch_warnings():
            # small training sets stop before sklearn's tolerance; the fit is still usable and seeded
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(features(seqs), y.astype(int))
        self.num_train = int(y.size)
        return self

    def predict_proba(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """P(correct) per chain, shape (N,)."""
        if self.model is None:
            raise RuntimeError(f"the {self.kind} is not trained: call fit(latents, labels) first")
        if not len(seqs):
            return np.zeros(0)
        return self.model.predict_proba(features(seqs))[:, 1]

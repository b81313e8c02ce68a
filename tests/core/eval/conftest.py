"""A synthetic dataset and a real (untrained, tiny) JEPA scorer shared by the evaluation tests."""

from __future__ import annotations

import pytest

from tests.core.eval.synthetic import make_dataset

HIDDEN = 16


@pytest.fixture(scope="package")
def dataset():
    return make_dataset(n_test=12, n_train=16, k=8, hidden=HIDDEN, seed=0)


@pytest.fixture(scope="package")
def scorer():
    import torch

    from rjepa_core.config import ScoreConfig, rjepa_tiny
    from rjepa_core.jepa.model import RJEPA
    from rjepa_core.jepa.scoring import JEPAScorer

    torch.manual_seed(0)
    return JEPAScorer(RJEPA(rjepa_tiny(hidden_size=HIDDEN)), ScoreConfig())


@pytest.fixture(scope="package")
def report(dataset, scorer):
    from rjepa_core.eval import evaluate

    history = [{"kind": "train", "step": s, "loss": 1.0 / s} for s in range(1, 30)]
    history += [{"kind": "val", "step": s, "val_loss": 1.2 / s} for s in (10, 20, 29)]
    return evaluate(
        dataset.problems,
        dataset.test_chains,
        dataset.test_latents,
        scorer,
        train_chains=dataset.train_chains,
        train_latents=dataset.train_latents,
        ks=(4, 8),
        seed=0,
        llm_tag="synthetic",
        dataset_version="v0",
        greedy=dataset.greedy,
        history=history,
    )

import numpy as np
import pytest

from rjepa_core.eval.localisation import first_error_localisation
from rjepa_core.jepa.normalisation import SurpriseNorm


def _chains(rng, n, lengths=(3, 4, 5)):
    """Surprise with a strong position bias (the first step is always the most surprising) plus noise."""
    out = []
    for _ in range(n):
        length = int(rng.choice(lengths))
        bias = np.array([3.0] + [0.5 + 0.1 * i for i in range(length - 1)])
        out.append(bias + rng.normal(0.0, 0.3, length))
    return out


def test_z_scores_remove_the_position_bias_and_find_the_planted_step():
    rng = np.random.default_rng(0)
    norm = SurpriseNorm.fit(_chains(rng, 400))
    test = _chains(rng, 300)
    wrong = [int(rng.integers(1, len(s))) for s in test]  # the first wrong step is never the first one
    for s, w in zip(test, wrong, strict=True):
        s[w] += 1.5  # 5 noise sd above its position's usual surprise, still below step 1's bias
    raw = first_error_localisation(test, wrong)
    z = first_error_localisation([norm.z(s) for s in test], wrong)
    assert raw["hit_rate"] < 0.1  # the biased argmax nearly always says step 1
    assert z["hit_rate"] > 0.9 and z["hit_rate"] > raw["chance_rate"] + 0.5


def test_small_cells_shrink_toward_their_position_and_roundtrip():
    rng = np.random.default_rng(1)
    chains = _chains(rng, 200, lengths=(3,)) + [np.array([3.0, 0.5, 0.6, 0.7, 0.8, 0.9])]  # one 6-step chain
    norm = SurpriseNorm.fit(chains)
    m6, _ = norm.cells["0,6"]
    assert 2.5 < m6 < 3.1  # one chain + 10 pseudo-chains of the position-0 statistics
    again = SurpriseNorm.from_dict(norm.to_dict())
    assert again.z([3.0, 0.6, 0.7]) == pytest.approx(norm.z([3.0, 0.6, 0.7]))
    assert len(norm.z([1.0] * 20)) == 20  # past max_len the last cell is reused
    with pytest.raises(ValueError):
        SurpriseNorm.fit([])
    with pytest.raises(ValueError):
        SurpriseNorm.fit([[float("nan")]])

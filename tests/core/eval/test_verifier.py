import numpy as np
import pytest

from rjepa_core.eval.metrics import auroc
from rjepa_core.eval.verifier import LatentClassifier, pool


def _data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    direction = np.random.default_rng(99).normal(size=16)  # the same signal in train and test
    seqs = [
        (rng.normal(size=(int(rng.integers(2, 6)), 16)) + (0.8 if y else -0.8) * direction).astype(np.float16)
        for y in labels
    ]
    return seqs, labels


def test_pool_is_the_step_mean_and_rejects_bad_shapes():
    H = np.arange(12, dtype=np.float16).reshape(3, 4)
    assert pool(H).tolist() == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="num_steps"):
        pool(np.zeros((0, 4)))


@pytest.mark.parametrize("kind", ["verifier", "probe"])
def test_classifier_separates_a_learnable_signal_on_held_out_chains(kind):
    train_x, train_y = _data(120, seed=0)
    test_x, test_y = _data(60, seed=1)
    clf = LatentClassifier(kind).fit(train_x, train_y)
    p = clf.predict_proba(test_x)
    assert p.shape == (60,) and ((p >= 0) & (p <= 1)).all()
    assert auroc(p, test_y) > 0.9
    assert clf.num_train == 120


def test_classifier_needs_both_classes_and_a_fit():
    x, _ = _data(10, seed=0)
    with pytest.raises(ValueError, match="both correct and incorrect"):
        LatentClassifier("probe").fit(x, [True] * 10)
    with pytest.raises(RuntimeError, match="call fit"):
        LatentClassifier("verifier").predict_proba(x)
    with pytest.raises(ValueError, match="unknown classifier kind"):
        LatentClassifier("svm")

import numpy as np
import pytest

from rjepa_core.config import ScoreConfig
from rjepa_core.inference.rerank import Candidate, RerankWeights, majority_vote, rerank
from rjepa_core.jepa.scoring import ChainScore


def _cands():
    return [
        Candidate("a b c d", ["a", "b"], logprob=-2.0, H=None, final_answer="4", num_tokens=4),  # best logprob
        Candidate("a b c d e f g h", ["a", "b", "c"], logprob=-12.0, H=None, final_answer="5", num_tokens=8),
        Candidate("a b", ["a"], logprob=-3.0, H=None, final_answer="4", num_tokens=2),  # shortest
    ]


def _scores():
    return [ChainScore(0.8, [0.8]), ChainScore(0.2, [0.2]), ChainScore(0.5, [0.5])]  # index 1 most lawful


def test_each_weight_picks_its_criterion():
    c, s = _cands(), _scores()
    assert rerank(c, s, RerankWeights(alpha=0, beta=1, gamma=0)).best_index == 1
    assert rerank(c, s, RerankWeights(alpha=1, beta=0, gamma=0)).best_index == 0  # -0.5 per token
    assert rerank(c, s, RerankWeights(alpha=0, beta=0, gamma=1)).best_index == 1  # longest
    assert rerank(c, s, RerankWeights(alpha=0, beta=0, gamma=-1)).best_index == 2  # shortest


def test_details_and_order_follow_composite():
    res = rerank(_cands(), _scores(), RerankWeights(alpha=1.0, beta=1.0, gamma=0.0))
    comp = [d["composite"] for d in res.details]
    assert res.order == sorted(range(3), key=lambda i: -comp[i]) and res.best_index == res.order[0]
    assert [d["chosen"] for d in res.details].count(True) == 1 and res.details[res.best_index]["chosen"]
    assert res.details[1]["logprob_per_token"] == pytest.approx(-1.5) and res.details[1]["length"] == 8
    z = np.array([-0.8, -0.2, -0.5])
    zs = (z - z.mean()) / z.std()
    lp = np.array([-0.5, -1.5, -1.5])
    zl = (lp - lp.mean()) / lp.std()
    assert comp == pytest.approx(list(zs + zl))


def test_default_weights_are_pure_jepa_and_edge_cases():
    w = RerankWeights.from_score_config(ScoreConfig())
    assert (w.alpha, w.beta, w.gamma) == (0.0, 1.0, 0.0)
    one = rerank(_cands()[:1], _scores()[:1], RerankWeights(1, 1, 1))
    assert one.best_index == 0 and one.details[0]["composite"] == 0.0
    ties = [ChainScore(0.5, [0.5])] * 3
    assert rerank(_cands(), ties, RerankWeights(0, 1, 0)).best_index == 0  # ties go to the first
    no_lp = [Candidate("x y", ["x"], None, None), Candidate("x y", ["x"], -1.0, None)]
    assert rerank(no_lp, ties[:2], RerankWeights(1, 0, 0)).best_index == 0  # missing logprob = worst known
    with pytest.raises(ValueError, match="2 candidates but 3 scores"):
        rerank(no_lp, ties, RerankWeights())


def test_majority_vote():
    assert majority_vote(["4", "5", " 4.", "5", "1,000", "1000", "1000"]) == 4
    assert majority_vote(["7", "8"]) == 0
    assert majority_vote([None, "3", None]) == 1
    assert majority_vote([None, None]) == 0

import numpy as np
import pytest
import torch

from rjepa_core.config import MaskConfig
from rjepa_core.jepa.collate import Chain, Collator
from rjepa_core.jepa.masks import make_masker


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["random", "contiguous", "hierarchical", "conclusion"])
def test_invariants_every_kind(kind):
    masker = make_masker(MaskConfig(kind=kind))
    g = _g()
    for n in range(2, 20):
        for _ in range(10):
            t = masker(n, g)
            assert t == sorted(set(t)) and 1 <= len(t) <= n - 1
            assert all(0 <= i < n for i in t)


def test_ratio_range_and_contiguity():
    cfg = MaskConfig(kind="contiguous", ratio_min=0.3, ratio_max=0.7)
    masker, g = make_masker(cfg), _g(1)
    sizes = set()
    for _ in range(200):
        t = masker(10, g)
        assert 3 <= len(t) <= 7 and t == list(range(t[0], t[0] + len(t)))
        sizes.add(len(t))
    assert len(sizes) >= 4  # the ratio is drawn, not fixed
    rnd = make_masker(MaskConfig(kind="random"))
    assert any(np.diff(rnd(10, g)).max() > 1 for _ in range(50))  # random sets are not always blocks


def test_min_context_is_respected():
    masker = make_masker(MaskConfig(kind="random", ratio_min=0.9, ratio_max=0.99, min_context=3))
    g = _g()
    assert all(len(masker(5, g)) == 2 for _ in range(20))
    with pytest.raises(ValueError, match="at least 4 steps"):
        masker(3, g)


def test_hierarchical_and_conclusion():
    h = make_masker(MaskConfig(kind="hierarchical"))
    assert h(6, _g()) == [1, 2, 3, 4]
    assert h(2, _g()) == [1]
    c = make_masker(MaskConfig(kind="conclusion"))
    assert c(6, _g()) == [5]
    c2 = make_masker(MaskConfig(kind="conclusion", conclusion_steps=2))
    assert c2(6, _g()) == [4, 5] and c2(2, _g()) == [1]


def _chains(lengths):
    rng = np.random.default_rng(0)
    names = ["math", "code", "x", "logic"][: len(lengths)]
    return [Chain(rng.normal(size=(n, 8)).astype(np.float16), d) for n, d in zip(lengths, names, strict=True)]


def test_collator_batch_layout_and_reproducibility():
    chains = _chains([4, 7, 1, 3])
    col = Collator(make_masker(MaskConfig(kind="random")), seed=5)
    b = col(chains, step=3)
    assert b.H.shape == (3, 7, 8) and b.H.dtype == torch.float32  # the 1-step chain is skipped
    assert col.skipped == 1
    assert b.domain_ids.tolist() == [0, 1, 2]
    assert b.lengths.tolist() == [4, 7, 3]
    assert torch.equal(b.ctx_valid & ~b.valid, torch.zeros_like(b.valid))  # padding never visible
    for i in range(3):
        tg = b.tgt_idx[i][b.tgt_valid[i]]
        assert not b.ctx_valid[i, tg].any() and b.ctx_valid[i].sum() + len(tg) == b.lengths[i]
    again = Collator(make_masker(MaskConfig(kind="random")), seed=5)(chains, step=3)
    assert torch.equal(again.tgt_idx, b.tgt_idx) and torch.equal(again.ctx_valid, b.ctx_valid)
    other = [Collator(make_masker(MaskConfig(kind="random")), seed=5)(chains, step=s).tgt_idx for s in range(8)]
    assert any(not torch.equal(o, other[0]) for o in other[1:])  # masks change with the step


def test_collator_rejects_all_short():
    col = Collator(make_masker(MaskConfig()), seed=0)
    with pytest.raises(ValueError, match="shorter than 2 steps"):
        col(_chains([1, 1]), step=0)


def test_collator_takes_latent_sequences():
    from rjepa_core.schemas import LatentSequence

    H = np.arange(4 * 8, dtype=np.float16).reshape(4, 8)
    seq = LatentSequence(
        cot_id="c", problem_id="p", llm_tag="t", layer_idx=-2, hidden_size=8, num_steps=4,
        step_spans=[(0, 1)] * 4, token_ids=[1], domain="code", is_valid=False, H=H,
    )  # fmt: skip
    b = Collator(make_masker(MaskConfig()), seed=0)([seq], step=0)
    assert b.domain_ids.tolist() == [1] and b.is_valid.tolist() == [False]
    assert torch.equal(b.H[0], torch.from_numpy(H.astype(np.float32)))

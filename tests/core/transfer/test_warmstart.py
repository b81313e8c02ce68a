"""Weight transfer: the reference body folded with the adapter into a checkpoint of the new width."""

from __future__ import annotations

import numpy as np
import torch

from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.jepa.collate import pad_batch
from rjepa_core.transfer.adapter import AdaptedRJEPA
from rjepa_core.transfer.fitting import AdapterFitConfig, fit_adapter
from rjepa_core.transfer.warmstart import curve, fold_adapter, train_scratch, train_transfer


def _batch(seqs):
    return pad_batch([np.asarray(s.H, np.float32) for s in seqs], [0] * len(seqs), [[1]] * len(seqs))


def test_folded_checkpoint_matches_the_reference_through_the_adapter(students, reference, tmp_path):
    adapter, _ = fit_adapter(reference, students["new"], students["ref"], AdapterFitConfig(method="ridge"))
    train = [s for s in students["new"] if s.split == "train"]
    folded = load_checkpoint(fold_adapter(reference, adapter, train, tmp_path / "init"))
    assert folded.config.model.hidden_size == 24 and folded.config.model.d_model == reference.config.model.d_model
    assert folded.meta["folded_from"] == str(reference.path)
    via = AdaptedRJEPA(reference.model, adapter).eval()
    with torch.no_grad():
        # the output head folds exactly: W_out after the reference head is one linear map
        pred = torch.randn(7, reference.config.model.d_model)
        assert torch.allclose(folded.model.to_hidden(pred), via.to_hidden(pred), atol=1e-4)
        # the input path is fitted (two LayerNorms in between): close on held-out latents, far from a fresh init
        b = _batch([s for s in students["new"] if s.split == "test"])
        want = via.encode_targets(b.H, b.valid, b.domain_ids)
        got = folded.model.encode_targets(b.H, b.valid, b.domain_ids)
        fresh = type(folded.model)(folded.config.model).eval().encode_targets(b.H, b.valid, b.domain_ids)
    err, base = (got - want).abs().mean().item(), (fresh - want).abs().mean().item()
    assert err < 0.5 * base, (err, base)


def test_warm_start_learns_faster_than_scratch(students, reference, tmp_path):
    adapter, _ = fit_adapter(reference, students["new"], students["ref"], AdapterFitConfig(method="ridge"))
    train = [s for s in students["new"] if s.split == "train"]
    init = fold_adapter(reference, adapter, train, tmp_path / "init")
    warm = train_transfer(reference, init, students["new"], tmp_path / "warm", steps=60, val_every=20)
    cold = train_scratch(reference, students["new"], tmp_path / "cold", steps=60, val_every=20)
    w, c = curve(warm.result), curve(cold.result)
    assert [s for s, _ in w] == [s for s, _ in c] == [0, 20, 40, 60]
    assert w[0][1] < 0.8 * c[0][1], (w, c)  # the transferred body starts far ahead ...
    assert warm.result.best_val_loss < cold.result.best_val_loss, (w, c)  # ... and is still ahead at equal budget
    assert warm.config.optim.lr == 1e-4 and cold.config.optim.lr == reference.config.optim.lr
    assert warm.meta["transfer"] == "warm_start" and warm.meta["warm_start_from"] == str(init)
    assert warm.meta["calibration"]["count"] > 0

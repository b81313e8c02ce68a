import dataclasses

import numpy as np
import pytest
import torch

from rjepa_core.jepa.checkpoint import load_checkpoint, resolve_checkpoint_dir, update_meta
from rjepa_core.jepa.collate import Chain
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.trainer import Trainer, batch_indices, param_groups, pick_negatives, train
from tests.core.jepa.conftest import HIDDEN, tiny_config
from tests.core.jepa.synthetic import lawful_chains, shuffled


def test_training_learns_without_collapse(trained):
    """The loss halves and nothing collapses (seen here: val loss ratio 0.51-0.54, hidden-head ratio
    0.83-0.86, std of targets 0.81 / predictions 0.63 at 1 and 2 threads). A trainer that does not learn
    (lr 0, frozen predictor) keeps both ratios at ~1.0; a collapsed one has std ~0."""
    cfg, res = trained
    assert res.steps == cfg.optim.total_steps and not res.stopped_early
    assert res.best_val_loss < 0.7 * res.initial_val_loss
    assert res.std_targets > 0.3 and res.std_preds > 0.3  # collapse monitors stay healthy
    train_rows = [r for r in res.history if r["kind"] == "train"]
    assert len(train_rows) == res.steps
    for key in ("loss", "jepa", "var", "cov", "infonce", "hidden", "lr", "momentum", "grad_norm", "std_targets"):
        assert all(np.isfinite(r[key]) for r in train_rows), key
    first, last = (np.mean([r["hidden"] for r in rows]) for rows in (train_rows[:10], train_rows[-10:]))
    assert last < 0.95 * first  # the hidden-space head learns too
    assert res.sequences_per_s > 0 and res.duration_s > 0


def test_checkpoints_rebuild_the_model(trained):
    cfg, res = trained
    best = load_checkpoint(res.checkpoint_dir, hidden_size=HIDDEN)
    last = load_checkpoint(res.last_dir)
    assert best.config == cfg and last.meta["step"] == res.steps and best.meta["hidden_size"] == HIDDEN
    assert best.meta["val_loss"] == pytest.approx(res.best_val_loss)
    assert not best.model.training
    with pytest.raises(ValueError, match=rf"hidden size {HIDDEN} but llm 'minilm' has 384.*calibration adapter"):
        load_checkpoint(res.checkpoint_dir, hidden_size=384, llm_tag="minilm")
    meta = update_meta(res.last_dir, note="x")
    assert meta["note"] == "x" and load_checkpoint(res.last_dir).meta["note"] == "x"


def test_interrupted_checkpoint_swap_falls_back_to_old(tmp_path, trained):
    _, res = trained
    import shutil

    shutil.copytree(res.last_dir, tmp_path / ".last.old")  # state after a crash between the two renames
    assert resolve_checkpoint_dir(tmp_path / "last") == tmp_path / ".last.old"
    assert load_checkpoint(tmp_path / "last").meta["step"] == res.steps


def test_early_stopping_triggers(tmp_path):
    cfg = tiny_config(optim={"lr": 0.0, "min_lr": 0.0, "total_steps": 100}, train={"val_every": 5, "patience": 2})
    res = train(cfg, lawful_chains(32, 5, HIDDEN), lawful_chains(8, 5, HIDDEN, seed=1), tmp_path, device="cpu")
    assert res.stopped_early and res.steps == 10
    again = train(cfg, lawful_chains(32, 5, HIDDEN), lawful_chains(8, 5, HIDDEN, seed=1), tmp_path, device="cpu")
    assert again.steps == 10  # resuming a stopped run does not train further


def test_collapse_monitor_sees_a_collapsed_target(trained):
    cfg, res = trained
    model = load_checkpoint(res.last_dir).model
    tr = Trainer(cfg, model, torch.device("cpu"))
    batch = [tr.collator(lawful_chains(16, 6, HIDDEN, seed=5), step=0)]
    healthy = tr.evaluate(batch)
    with torch.no_grad():
        norm = model.target_encoder.transformer.norm
        norm.weight.zero_()
        norm.bias.copy_(torch.linspace(-1, 1, norm.bias.numel()))  # every step maps to one vector
    collapsed = tr.evaluate(batch)
    assert healthy["std_targets"] > 0.3 and collapsed["std_targets"] < 1e-3


def test_hard_negatives_and_infonce(tmp_path):
    cfg = tiny_config(
        optim={"total_steps": 6}, loss={"infonce_weight": 0.5, "hard_negatives": True, "num_hard_negatives": 3}
    )
    good = lawful_chains(16, 5, HIDDEN)
    bad = [shuffled(c, i) for i, c in enumerate(good[:6])]
    res = train(cfg, good + bad, [], tmp_path, device="cpu")
    rows = [r for r in res.history if r["kind"] == "train"]
    assert all(r["infonce"] > 0 for r in rows) and res.num_train == 16 and res.skipped == 6
    assert res.best_val_loss is None and (res.checkpoint_dir / "model.safetensors").exists()


def test_energy_margin_trains_on_same_problem_pairs(tmp_path):
    cfg = tiny_config(
        optim={"total_steps": 6},
        loss={"hard_negatives": True, "num_hard_negatives": 4, "energy_weight": 1.0, "energy_pairs": "problem"},
    )
    good = [dataclasses.replace(c, group=f"p{i % 4}") for i, c in enumerate(lawful_chains(16, 5, HIDDEN))]
    bad = [dataclasses.replace(shuffled(c, i), group=c.group) for i, c in enumerate(good[:8])]
    res = train(cfg, good + bad, [], tmp_path, device="cpu")
    rows = [r for r in res.history if r["kind"] == "train"]
    # the margin (0.05) is paid by predictions that start untrained: every step has same-problem pairs
    assert len(rows) == 6 and all(r["energy"] > 0 for r in rows)
    plain = train(tiny_config(optim={"total_steps": 2}), good + bad, [], tmp_path / "plain", device="cpu")
    assert all(r["energy"] == 0 for r in plain.history if r["kind"] == "train")


def test_negatives_come_from_the_batch_problems():
    from rjepa_core.config import LossConfig

    negs = [Chain(np.zeros((3, 4), np.float16), is_valid=False, group=g) for g in "aabbcc"]
    by_group: dict[str, list[int]] = {}
    for i, c in enumerate(negs):
        by_group.setdefault(c.group, []).append(i)
    batch = [Chain(np.zeros((3, 4), np.float16), group="b")]
    loss = LossConfig(hard_negatives=True, num_hard_negatives=5, energy_weight=1.0, energy_pairs="problem")
    picked = pick_negatives(negs, by_group, batch, loss, seed=0, step=3)
    assert len(picked) == 5 and {c.group for c in picked} == {"b"}
    assert picked == pick_negatives(negs, by_group, batch, loss, seed=0, step=3)  # a pure function of (seed, step)
    lost = [Chain(np.zeros((3, 4), np.float16), group="z")]  # no invalid chain of its problem: any will do
    assert len(pick_negatives(negs, by_group, lost, loss, seed=0, step=3)) == 5
    anywhere = dataclasses.replace(loss, energy_pairs="batch")
    groups = {c.group for s in range(20) for c in pick_negatives(negs, by_group, batch, anywhere, seed=0, step=s)}
    assert groups == {"a", "b", "c"}


def test_bad_inputs_are_explained(tmp_path):
    cfg = tiny_config(optim={"total_steps": 2})
    wide = [Chain(np.zeros((4, HIDDEN + 3), np.float16))]
    with pytest.raises(ValueError, match=f"model.hidden_size={HIDDEN}"):
        train(cfg, wide, [], tmp_path, device="cpu")
    with pytest.raises(ValueError, match="no validated chain"):
        train(cfg, [Chain(np.zeros((1, HIDDEN), np.float16))], [], tmp_path, device="cpu")


def test_data_order_and_weight_decay_groups():
    a = batch_indices(7, 50, 8, seed=1)
    assert np.array_equal(a, batch_indices(7, 50, 8, seed=1)) and len(a) == 8
    epoch = np.concatenate([batch_indices(s, 50, 8, seed=1) for s in range(7)])
    assert sorted(epoch.tolist()) == list(range(50))  # one epoch covers every chain once
    model = RJEPA(tiny_config().model)
    decay, rest = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 and "pos" not in names[id(p)] and "domain" not in names[id(p)] for p in decay["params"])
    assert any(names[id(p)].endswith("register") for p in rest["params"])
    assert not any(names[id(p)].startswith("target_encoder") for g in (decay, rest) for p in g["params"])

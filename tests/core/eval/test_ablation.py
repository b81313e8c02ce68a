from rjepa_core.config import RJEPAConfig, rjepa_tiny
from rjepa_core.eval.ablation import LayerData, run_ablations, variant_config
from rjepa_core.jepa.collate import Chain
from tests.core.eval.conftest import HIDDEN


def test_variant_config_applies_preset_and_overrides():
    base = RJEPAConfig(model=rjepa_tiny(HIDDEN))
    cfg = variant_config(base, {"preset": "small", "mask": {"kind": "random"}, "optim": {"lr": 1e-3}}, HIDDEN)
    assert cfg.model.d_model == 256 and cfg.model.hidden_size == HIDDEN
    assert cfg.mask.kind == "random" and cfg.optim.lr == 1e-3
    assert variant_config(None, {}, 32).model.hidden_size == 32


def test_run_ablations_trains_each_variant_and_measures_it(dataset, tmp_path):
    import numpy as np

    train = [Chain(h, "math") for h in dataset.lawful_train[:24]]
    val = [Chain(h, "math") for h in dataset.lawful_train[24:32]]
    val_chains = [c for c in dataset.train_chains if c.meta["split"] == "val"]
    base = RJEPAConfig(model=rjepa_tiny(HIDDEN)).replace(
        optim={"total_steps": 2, "warmup_steps": 1}, train={"batch_size": 8, "val_every": 2, "checkpoint_every": 0}
    )
    # "layer -3" latents: another (here: scaled) representation of the same chains
    layer = LayerData(train, val, {k: (np.asarray(v) * 2).astype(np.float16) for k, v in dataset.train_latents.items()})
    rows = run_ablations(
        train,
        val,
        val_chains,
        dataset.train_latents,
        [
            {"name": "base"},
            {"name": "random mask", "mask": {"kind": "random"}},
            {"name": "l-3", "layer_idx": -3},
            {"name": "l-5", "layer_idx": -5},
            {"name": "bad", "mask": {"kind": "nope"}},
        ],
        out_dir=tmp_path,
        base_config=base,
        layers={-3: layer},
        k=4,
    )
    assert [r["name"] for r in rows] == ["base", "random mask", "l-3", "l-5", "bad"]
    for r in rows[:3]:
        assert r["error"] is None, r["error"]
        assert r["steps"] == 2 and r["n_problems"] > 0 and r["k"] == 4
        assert 0.0 <= r["rerank_accuracy"] <= r["oracle"] <= 1.0
        assert r["auroc"] is None or 0.0 <= r["auroc"] <= 1.0
    assert rows[2]["layer_idx"] == -3
    assert "layer_idx=-5" in rows[3]["error"]
    assert "mask.kind" in rows[4]["error"]

from pathlib import Path

import pytest

from rjepa_core.config import PRESETS, RJEPAConfig, rjepa_base, rjepa_large, rjepa_small, rjepa_tiny

ROOT = Path(__file__).resolve().parents[3]


def test_presets_widths():
    assert (rjepa_tiny(576).d_model, rjepa_tiny(576).depth, rjepa_tiny(576).pred_d_model) == (64, 2, 32)
    assert (rjepa_small(576).d_model, rjepa_small(576).depth) == (256, 4)
    assert (rjepa_base(576).d_model, rjepa_base(576).depth) == (512, 8)
    assert (rjepa_large(576).d_model, rjepa_large(576).depth) == (1024, 12)
    for f in PRESETS.values():
        m = f(384)
        assert m.hidden_size == 384 and m.pred_d_model < m.d_model


def test_yaml_files_load_and_round_trip():
    from rjepa_core.pipeline import load_rjepa_config

    for name in ("default", "tiny"):  # shipped YAMLs leave hidden_size to the latents they train on
        cfg = load_rjepa_config(ROOT / "configs" / "rjepa" / f"{name}.yaml", 576)
        assert cfg.model.hidden_size == 576
        assert RJEPAConfig.from_dict(cfg.to_dict()) == cfg
        with pytest.raises(ValueError, match="hidden_size"):
            RJEPAConfig.from_yaml(ROOT / "configs" / "rjepa" / f"{name}.yaml")
    tiny = load_rjepa_config(ROOT / "configs/rjepa/tiny.yaml", 384, train={"batch_size": 4})
    assert tiny.model.d_model == 64 and tiny.train.batch_size == 4 and tiny.model.hidden_size == 384


def test_a_config_extends_another_key_by_key(tmp_path):
    from rjepa_core.pipeline import load_rjepa_config

    energy = load_rjepa_config(ROOT / "configs/rjepa/energy.yaml", 576)
    default = load_rjepa_config(ROOT / "configs/rjepa/default.yaml", 576)
    assert energy.loss.energy_weight > 0 and energy.loss.hard_negatives and not default.loss.hard_negatives
    assert (energy.model, energy.optim, energy.mask) == (default.model, default.optim, default.mask)
    assert energy.loss.var_weight == default.loss.var_weight  # a key the child does not set comes from its parent
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nloss: {kind: l2}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="extends itself"):
        load_rjepa_config(tmp_path / "a.yaml", 16)
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_rjepa_config(tmp_path / "c.yaml", 16)
    (tmp_path / "d.yaml").write_text("extends: e.yaml\noptim: {lr: 0.5}\n")
    (tmp_path / "e.yaml").write_text("optim: {lr: 0.1, warmup_steps: 7}\n")
    got = load_rjepa_config(tmp_path / "d.yaml", 16).optim
    assert (got.lr, got.warmup_steps) == (0.5, 7)


def test_replace_and_domain_mapping():
    cfg = RJEPAConfig(model=rjepa_tiny(16))
    cfg2 = cfg.replace(mask={"kind": "random"}, optim={"lr": 1e-2})
    assert cfg2.mask.kind == "random" and cfg2.optim.lr == 1e-2 and cfg.mask.kind == "contiguous"
    assert cfg.model.domain_id("code") == 1
    assert cfg.model.domain_id("astrology") == cfg.model.domain_id("other") == 3


@pytest.mark.parametrize(
    "d, field",
    [
        ({"model": {"hidden_size": 16, "d_model": 30, "num_heads": 4}}, "model.num_heads"),
        ({"model": {"d_model": 32}}, "model.hidden_size"),
        ({"model": {"hidden_size": 16}, "mask": {"kind": "zigzag"}}, "mask.kind"),
        ({"model": {"hidden_size": 16}, "mask": {"ratio_min": 0.8, "ratio_max": 0.5}}, "mask.ratio_min"),
        ({"model": {"hidden_size": 16}, "loss": {"kind": "huber"}}, "loss.kind"),
        ({"model": {"hidden_size": 16}, "optim": {"betas": [0.9]}}, "optim.betas"),
        ({"model": {"hidden_size": 16}, "train": {"batch_size": 0}}, "train.batch_size"),
        ({"model": {"hidden_size": 16}, "score": {"aggregate": "median"}}, "score.aggregate"),
        ({"model": {"hidden_size": 16, "domains": ["math"]}}, "model.domains"),
        ({"model": {"hidden_size": 16, "preset": "huge"}}, "model.preset"),
        ({"model": {"hidden_size": 16}, "train": {"batchsize": 3}}, "train: unknown field"),
    ],
)
def test_validation_names_the_field(d, field):
    with pytest.raises(ValueError, match=field):
        RJEPAConfig.from_dict(d)


def test_yaml_error_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  hidden_size: 16\n  depth: -1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: model.depth"):
        RJEPAConfig.from_yaml(p)

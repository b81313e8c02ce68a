"""Adapter fits: paired ridge / Procrustes on real tiny transformers, the F13 JEPA fit, its collapse guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rjepa_core.transfer.adapter import AdaptedRJEPA, LatentAdapter
from rjepa_core.transfer.fitting import AdapterFitConfig, calibration_split, fit_adapter, jepa_chains, jepa_held_out
from rjepa_core.transfer.paired import fit_procrustes, fit_ridge, map_r2, pad_map, pair_latents, paired_from_students


@pytest.mark.parametrize("in_width,ref_width", [(24, 16), (16, 24)])
def test_procrustes_recovers_a_semi_orthogonal_map_between_widths(in_width, ref_width):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, in_width)).astype(np.float32)
    if in_width < ref_width:  # an isometry into more dims: exact for any input spread
        X *= np.linspace(0.5, 3, in_width).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((max(in_width, ref_width), min(in_width, ref_width))))
    Q = Q if in_width > ref_width else Q.T  # (in, ref) semi-orthogonal
    Y = 2.0 * X @ Q + 5.0  # scaled, shifted
    fit, held = slice(0, 3000), slice(3000, None)
    pro = fit_procrustes(X[fit], Y[fit])
    W = pro.W / np.linalg.norm(pro.W, 2)  # (ref, in)
    small = W @ W.T if ref_width < in_width else W.T @ W
    assert np.allclose(small, np.eye(min(in_width, ref_width)), atol=1e-4)  # semi-orthogonal up to its scale
    # dropping dimensions, the SVD solution (max tr RᵀXᵀY) is least squares only as far as X is isotropic
    assert map_r2(pro, X[held], Y[held]) > (0.999 if in_width < ref_width else 0.99)
    assert map_r2(fit_ridge(X[fit], Y[fit], 1e-4), X[held], Y[held]) > 0.999
    assert map_r2(pad_map(in_width, ref_width), X[held], Y[held]) < 0.0  # the do-nothing map is far off


@pytest.fixture(scope="module")
def two_tiny_students(tmp_path_factory):
    """Two real tiny transformers of widths 32 and 48 (same tokenizer, different weights)."""
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec
    from rjepa_core.llm.testing import build_tiny_llm

    out = {}
    for tag, width, seed in (("ref", 32, 0), ("new", 48, 1)):
        path = build_tiny_llm(tmp_path_factory.mktemp(tag), hidden_size=width, seed=seed)
        out[tag] = StudentLLM.load(LLMSpec(llm_tag=tag, source=str(path), batch_size=8), device="cpu")
    return out


def test_paired_latents_from_two_real_students(two_tiny_students):
    from rjepa_core.llm.extraction import ChainInput

    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(48):
        a, b, c = (int(v) for v in rng.integers(1, 9, size=3))
        steps = [f"{a} + {b} = {a + b}", f"{a + b} * {c} = {(a + b) * c}", f"So the answer is {(a + b) * c}."]
        inputs.append(ChainInput(prompt=f"Problem: What is ({a} + {b}) * {c}?\n", steps=steps))
    X, Y = paired_from_students(two_tiny_students["new"], two_tiny_students["ref"], inputs)
    assert X.shape == (48 * 3, 48) and Y.shape == (48 * 3, 32)
    fit, held = slice(0, 108), slice(108, None)  # by chain: the first 36 chains fit, the last 12 test
    r2 = {
        "pad": map_r2(pad_map(48, 32), X[held], Y[held]),
        "procrustes": map_r2(fit_procrustes(X[fit], Y[fit]), X[held], Y[held]),
        "ridge": map_r2(fit_ridge(X[fit], Y[fit], 1e-1), X[held], Y[held]),
    }
    assert r2["procrustes"] > r2["pad"] + 0.5, r2
    assert r2["ridge"] > r2["procrustes"] and r2["ridge"] > 0.3, r2


def test_pairs_follow_cot_ids_and_step_counts(students):
    new, ref = students["new"], students["ref"]
    X, Y, ids = pair_latents(new[:10], ref[5:15])  # chains 5..9 are in both
    assert sorted(set(ids)) == [f"c{i}" for i in range(5, 10)]
    assert X.shape == (sum(s.num_steps for s in new[5:10]), 24) and Y.shape[0] == X.shape[0]


def test_jepa_fit_beats_the_baselines_without_pairs(students, reference):
    # the reference's own latents under other cot_ids: nothing pairs, the F13 fit starts from a random map
    unpaired = [s.model_copy(update={"cot_id": "r" + s.cot_id}) for s in students["ref"]]
    for s, o in zip(unpaired, students["ref"], strict=True):
        s.H = o.H
    cfg = AdapterFitConfig(steps=200, eval_every=25, patience=8, calibration_fraction=0.1, min_calibration=1)
    adapter, rep = fit_adapter(reference, students["new"], unpaired, cfg)
    ratio = {k: v["ratio"] for k, v in rep["held_out"].items()}
    assert rep["started_from"] == "random" and rep["paired"] == {"n_chains": 0}
    assert rep["num_calibration_chains"] == pytest.approx(0.1 * rep["num_train_chains"], abs=1)
    assert ratio["jepa"] < 0.95 * ratio["random"] and ratio["jepa"] < 0.8 * ratio["pad"], ratio
    # no collapse: the fitted map keeps the held-out targets spread, W_in's spectrum stays where it started
    assert rep["held_out"]["jepa"]["std_targets"] > 0.5 * rep["held_out"]["random"]["std_targets"]
    sv = rep["w_in_singular_values"]
    assert sv["min"] > 0.5 * sv["max"]
    assert rep["calibration"]["count"] == rep["num_held_out_chains"]


def test_paired_fit_starts_from_the_best_paired_map(students, reference):
    adapter, rep = fit_adapter(reference, students["new"], students["ref"], AdapterFitConfig(steps=50))
    r2 = rep["paired"]["r2"]
    assert r2["ridge"] > 0.9 and r2["ridge"] > r2["procrustes"] > r2["pad"], r2
    assert rep["started_from"] in ("ridge", "procrustes")
    ratio = {k: v["ratio"] for k, v in rep["held_out"].items()}
    assert ratio["jepa"] <= ratio[rep["started_from"]]  # early stopping never ends worse than the start
    for method in ("procrustes", "ridge"):
        _, r = fit_adapter(reference, students["new"], students["ref"], AdapterFitConfig(method=method))
        assert r["history"] == [] and r["method"] == method


def test_the_held_out_ratio_exposes_a_collapsed_map(students, reference):
    """A near-zero W_in makes every step's target depend on its position and domain only: the JEPA-loss falls
    (collapse looks like success), the ratio to the position/domain-aware trivial predictor shoots up."""
    adapter, _ = fit_adapter(reference, students["new"], students["ref"], AdapterFitConfig(method="procrustes"))
    _, held_seqs = calibration_split(students["new"], AdapterFitConfig())
    held = jepa_chains(held_seqs, reference)
    good = jepa_held_out(AdaptedRJEPA(reference.model, adapter), held, reference)
    collapsed = LatentAdapter(24, 16).set_maps(adapter.W_in.weight * 1e-6, torch.zeros(24, 16))
    collapsed.set_centres(adapter.c_in, adapter.c_ref)
    bad = jepa_held_out(AdaptedRJEPA(reference.model, collapsed), held, reference)
    assert bad["loss"] < good["loss"]  # what an unguarded fit would be rewarded for
    assert bad["ratio"] > 3 * good["ratio"] and bad["std_targets"] < 0.2 * good["std_targets"]


def test_a_bad_config_and_missing_pairs_say_what_to_do(students, reference):
    with pytest.raises(ValueError, match="use one of"):
        AdapterFitConfig(method="cca").validate()
    unpaired = [s.model_copy(update={"cot_id": "r" + s.cot_id}) for s in students["ref"][:20]]
    for s, o in zip(unpaired, students["ref"][:20], strict=True):
        s.H = o.H
    with pytest.raises(ValueError, match="needs chains encoded by both students"):
        fit_adapter(reference, students["new"], unpaired, AdapterFitConfig(method="procrustes"))

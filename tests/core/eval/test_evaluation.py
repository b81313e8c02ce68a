import numpy as np
import pytest

from rjepa_core.eval import evaluate
from rjepa_core.eval.metrics import oracle_pass_at_k
from rjepa_core.eval.selection import METHODS
from tests.core.eval.conftest import HIDDEN
from tests.core.eval.synthetic import make_dataset
from tests.stats import null_auroc_sd


def test_report_has_the_contract_fields(report):
    assert report["k"] == 8 and report["ks"] == [4, 8]
    assert report["n_problems"] == 12 and report["n_candidates"] == 96
    assert report["llm_tag"] == "synthetic" and report["dataset_version"] == "v0"
    assert report["greedy_source"] == "greedy_decoding"
    assert set(report["methods"]) == set(METHODS)
    assert set(report["rerank_minus_majority"]) == {"k=4", "k=8"}
    assert 0.0 <= report["auroc_jepa"] <= 1.0
    assert report["skipped_methods"] == {}
    assert report["composite_weights_source"].startswith("fitted on")
    vote = report["jepa_vote"]
    assert (
        vote["source"].startswith("fitted on")
        and vote["tau"] > 0
        and vote["tau_rel"] in [r["tau_rel"] for r in vote["grid"]]
    )
    paired = report["paired_vs_majority"]
    assert {"jepa", "jepa_vote", "jepa_filter_majority", "composite"} <= set(paired)
    for per_k in paired.values():
        for d in per_k.values():
            lo, hi = d["ci95"]
            assert lo <= d["diff"] <= hi


def test_every_method_has_metrics_per_k_with_the_point_inside_its_interval(report):
    for name, per_k in report["methods"].items():
        for key in ("k=4", "k=8"):
            m = per_k[key]
            assert 0.0 <= m["accuracy"] <= 1.0, name
            lo, hi = m["ci95"]
            assert lo <= m["accuracy"] <= hi, name
            assert m["accuracy"] <= m["oracle_pass_at_k"] + 1e-9, name
            assert m["latency_ms_per_candidate"] >= 0.0
            if name in ("greedy", "random"):
                assert m["auroc"] is None
            else:
                assert 0.0 <= m["auroc"] <= 1.0, name


def test_oracle_and_greedy_match_the_data(report, dataset):
    by_pid = {}
    for c in dataset.test_chains:
        by_pid.setdefault(c.problem_id, []).append(c.is_valid)
    assert report["oracle"]["k=8"] == pytest.approx(oracle_pass_at_k(list(by_pid.values()), 8))
    greedy_acc = np.mean([dataset.greedy[p].is_valid for p in by_pid])
    assert report["methods"]["greedy"]["k=4"]["accuracy"] == pytest.approx(greedy_acc)
    rate = np.mean([c.is_valid for c in dataset.test_chains])
    assert report["correct_rate"] == pytest.approx(rate)
    # one task family here: its breakdown equals the K=8 totals
    [(source, row)] = report["by_source"].items()
    assert source == "synthetic" and row["n_problems"] == report["n_problems_per_k"]["k=8"]
    assert row["oracle_pass_at_k"] == pytest.approx(report["oracle"]["k=8"])
    for name, acc in row["accuracy"].items():
        assert acc == pytest.approx(report["methods"][name]["k=8"]["accuracy"]), name


def test_verifier_learns_the_synthetic_signal():
    """Wrong chains jump off the dynamics with a larger norm: a supervised verifier should see it.

    On a bigger synthetic set than the shared fixture (60 test problems × 8 candidates, ~160 correct)
    random scores give AUROC 0.5 ± null_auroc_sd ≈ 0.028; the verifier gets ~0.71 here and must clear
    chance by 4 sd (≈ 0.61). On the 12-problem fixture it was 0.64 against a fixed 0.6: too thin.
    """
    data = make_dataset(n_test=60, n_train=60, k=8, hidden=HIDDEN, seed=0)
    rep = evaluate(
        data.problems,
        data.test_chains,
        data.test_latents,
        None,
        train_chains=data.train_chains,
        train_latents=data.train_latents,
        ks=(8,),
    )
    n_pos = sum(c.is_valid for c in data.test_chains)
    chance_band = 4 * null_auroc_sd(n_pos, len(data.test_chains) - n_pos)
    assert rep["methods"]["verifier"]["k=8"]["auroc"] > 0.5 + chance_band, rep["methods"]["verifier"]["k=8"]
    assert rep["classifiers"]["verifier"]["num_train"] == len(data.train_chains)


def test_localisation_and_jepa_distributions_are_reported(report, dataset):
    loc = report["localisation"]
    n_wrong = sum(not c.is_valid for c in dataset.test_chains)
    assert loc["n_incorrect"] == n_wrong and 0 < loc["n"] <= n_wrong
    assert 0.0 <= loc["hit_rate"] <= 1.0 and 0.0 < loc["chance_rate"] < 1.0
    z = loc["position_normalised"]
    assert z["n"] == loc["n"] and z["chance_rate"] == loc["chance_rate"] and "val-split" in z["fitted_on"]
    assert loc["three_plus_steps"]["min_steps"] == 3 and loc["three_plus_steps"]["n"] <= loc["n"]
    values = report["jepa_loss_values"]
    assert len(values["correct"]) + len(values["incorrect"]) == 96
    assert report["jepa_loss_by_correctness"]["n_incorrect"] == len(values["incorrect"])


def test_without_greedy_or_scorer_the_report_says_so(dataset):
    rep = evaluate(dataset.problems, dataset.test_chains, dataset.test_latents, None, ks=(4,))
    assert rep["greedy_source"] == "first_sample"
    assert {"jepa", "composite", "verifier", "probe"} <= set(rep["skipped_methods"])
    assert "jepa" not in rep["methods"] and "majority" in rep["methods"]
    assert rep["auroc_jepa"] is None
    first = {}
    for c in dataset.test_chains:
        if c.meta["sample_index"] == 0:
            first[c.problem_id] = c.is_valid
    assert rep["methods"]["greedy"]["k=4"]["accuracy"] == pytest.approx(np.mean(list(first.values())))


def test_given_weights_are_used(dataset, scorer):
    rep = evaluate(
        dataset.problems,
        dataset.test_chains,
        dataset.test_latents,
        scorer,
        ks=(4,),
        weights={"alpha": 0.0, "beta": 1.0, "gamma": 0.0},
    )
    assert rep["composite_weights"] == {"alpha": 0.0, "beta": 1.0, "gamma": 0.0}
    assert rep["composite_weights_source"] == "given"
    # pure-JEPA composite is JEPA rerank
    assert rep["methods"]["composite"]["k=4"]["accuracy"] == rep["methods"]["jepa"]["k=4"]["accuracy"]


def test_missing_latents_or_candidates_fail_with_a_clear_message(dataset, scorer):
    latents = dict(dataset.test_latents)
    latents.pop(dataset.test_chains[0].cot_id)
    with pytest.raises(ValueError, match="materialize the latents"):
        evaluate(dataset.problems, dataset.test_chains, latents, scorer)
    with pytest.raises(ValueError, match="sampled candidates"):
        evaluate(dataset.problems, dataset.test_chains, dataset.test_latents, scorer, ks=(16,))


def test_fit_selection_gives_the_checkpoint_the_settings_the_report_fits(dataset, scorer, report):
    """The settings a checkpoint carries (τ_rel, surprise norm) equal the ones evaluate() fits on val."""
    from rjepa_core.eval.evaluation import fit_selection
    from rjepa_core.jepa.normalisation import SurpriseNorm, first_above
    from rjepa_core.jepa.scoring import JEPAScorer

    held = [c for c in dataset.train_chains]
    entries = fit_selection(scorer, dataset.problems, held, dataset.train_latents)
    assert entries["jepa_vote"]["tau_rel"] == report["jepa_vote"]["tau_rel"]
    assert "val-split" in entries["jepa_vote"]["source"] and "val-split" in entries["surprise_norm"]["source"]
    norm = SurpriseNorm.from_dict(entries["surprise_norm"])
    loc = entries["localisation"]
    assert loc["rule"] == "first_above" and "val-split" in loc["source"] and "grid" not in loc
    with_norm = JEPAScorer(scorer.model, scorer.cfg, surprise_norm=norm, localisation_threshold=loc["threshold"])
    some = [dataset.test_latents[c.cot_id] for c in dataset.test_chains[:6]]
    for raw, zs in zip(scorer.score(some), with_norm.score(some), strict=True):
        assert raw.step_z is None and zs.step_surprise == raw.step_surprise
        assert zs.step_z == norm.z(raw.step_surprise)
        assert zs.most_surprising_step == int(np.argmax(zs.step_z))
        assert raw.first_unlawful_step is None and zs.first_unlawful_step == first_above(zs.step_z, loc["threshold"])
    rep = evaluate(
        dataset.problems,
        dataset.test_chains,
        dataset.test_latents,
        with_norm,
        train_chains=dataset.train_chains,
        train_latents=dataset.train_latents,
        ks=(8,),
        tau_rel=entries["jepa_vote"]["tau_rel"],
        tau_source="the checkpoint's meta",
    )
    assert rep["jepa_vote"]["source"] == "the checkpoint's meta"
    assert rep["localisation"]["position_normalised"]["fitted_on"] == "the checkpoint's meta"
    assert (
        rep["localisation"]["position_normalised"]["hit_rate"]
        == report["localisation"]["position_normalised"]["hit_rate"]
    )
    # a scorer without a fitted threshold of its own: the report fits it on val with the scorer's norm
    first = rep["localisation"]["first_above"]
    assert first["threshold"] == loc["threshold"] and first["threshold_source"] == loc["source"]
    assert first["n"] == rep["localisation"]["position_normalised"]["n"]
    for name in ("matched_chance_rate", "best_constant_rate"):
        assert 0.0 <= first[name] <= 1.0
    assert fit_selection(scorer, dataset.problems, [], dataset.train_latents) == {}


def test_a_k_no_problem_reaches_is_skipped_and_reported(dataset):
    """Candidates for K=8 at most: asking for (4, 64) measures K=4 and says 64 was skipped (no crash)."""
    rep = evaluate(dataset.problems, dataset.test_chains, dataset.test_latents, None, ks=(4, 64))
    assert rep["ks"] == [4] and rep["ks_skipped"] == [64]
    assert set(rep["methods"]["majority"]) == {"k=4"}

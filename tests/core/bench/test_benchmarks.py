"""Each benchmark runs end to end on the tiny model and writes its JSON; speed is never asserted."""

import json

import pytest

from rjepa_core.bench import BENCHMARKS, run_benchmark

MACHINE_FIELDS = {"cpu_count", "torch_version", "device"}


def _check_common(result, path, name):
    on_disk = json.loads(path.read_text())
    assert on_disk["benchmark"] == name and on_disk["quick"] is True
    assert MACHINE_FIELDS <= set(on_disk["machine"])
    assert on_disk["call"] == f"run_benchmark({name!r}, quick=True)"
    assert "command" in on_disk and on_disk["device"] == "cpu"
    assert on_disk == json.loads(json.dumps(result, default=str))
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return on_disk


def test_extraction_benchmark_compares_pipeline_and_naive(tmp_path):
    r = _check_common(
        run_benchmark("extraction", tmp_path, quick=True, device="cpu"), tmp_path / "extraction.json", "extraction"
    )
    for side in ("pipeline", "naive"):
        assert r[side]["chains_per_s"] > 0 and r[side]["tokens_per_s"] > 0
    assert r["speedup_vs_naive"] == pytest.approx(r["naive"]["seconds"] / r["pipeline"]["seconds"])
    # both methods pool the same tokens of the same layer: the latents must agree
    assert r["agreement_mean_cosine"] > 0.99
    assert r["n_chains"] == 8 and r["n_tokens"] > 0 and r["chains_per_prompt"] == 4
    # the same comparison on chains that share no prompt (prefix sharing cannot help there)
    d = r["distinct_prompts"]
    assert d["agreement_mean_cosine"] > 0.99 and d["n_tokens"] > 0
    assert d["speedup_vs_naive"] == pytest.approx(d["naive"]["seconds"] / d["pipeline"]["seconds"])


def test_bench_items_group_chains_under_shared_prompts():
    from rjepa_core.bench.common import sample_items

    class Llm:
        def prompt_for(self, statement):
            return f"Q: {statement}\n"

    items = sample_items(Llm(), 10, seed=0, per_prompt=4)
    prompts = [p for p, _ in items]
    assert len(items) == 10 and len(set(prompts)) == 3
    assert prompts[:4] == [prompts[0]] * 4 and prompts[4] != prompts[0]
    assert len({tuple(s) for _, s in items[:4]}) == 4  # different chains under one prompt
    with pytest.raises(ValueError, match="per_prompt"):
        sample_items(Llm(), 4, per_prompt=0)


def test_training_benchmark_reports_throughput_and_data_wait(tmp_path):
    r = _check_common(
        run_benchmark("training", tmp_path, quick=True, device="cpu"), tmp_path / "training.json", "training"
    )
    assert r["sequences_per_s"] > 0 and r["train_fn_sequences_per_s"] > 0
    assert 0.0 < r["data_wait_share"] < 1.0
    assert r["data_ms_per_step"] < r["step_ms"]


def test_scoring_benchmark_relates_scoring_to_generation(tmp_path):
    r = _check_common(
        run_benchmark("scoring", tmp_path, quick=True, device="cpu"), tmp_path / "scoring.json", "scoring"
    )
    assert r["k"] == 8 and r["candidates"] == 8 and r["same_samples"] is True
    expected = 100.0 * (r["capture_s"] + r["jepa_scoring_s"]) / r["generation_s"]
    assert r["scoring_pct_of_generation"] == pytest.approx(expected)
    old = 100.0 * (r["extraction_s"] + r["jepa_scoring_s"]) / r["generation_s"]
    assert r["teacher_forced_scoring_pct_of_generation"] == pytest.approx(old)
    assert r["capture_s"] >= r["capture_instrumented"]["seconds"] > 0


def test_generation_benchmark_compares_batched_and_single(tmp_path):
    r = _check_common(
        run_benchmark("generation", tmp_path, quick=True, device="cpu"), tmp_path / "generation.json", "generation"
    )
    assert r["batched"]["batch_size"] == r["chains"] and r["single"]["batch_size"] == 1
    assert r["batched"]["tokens"] > 0 and r["single"]["tokens"] > 0
    assert r["speedup_batched"] > 0
    chains = r["student_chains"]
    assert chains["same_samples"] is True and chains["n_chains"] == 16 and chains["n_captured"] >= 1
    assert r["extraction_pct_of_sampling"] == pytest.approx(100.0 * chains["capture_s"] / chains["sampling_s"])
    agree = r["capture_agreement"]
    assert agree["n_chains"] == chains["n_captured"] and agree["step_cosine"]["n"] == agree["n_steps"] > 0
    assert agree["same_tokens_step_cosine"]["n"] + agree["other_step_cosine"]["n"] == agree["n_steps"]
    assert -1.0 <= agree["step_cosine"]["min"] <= agree["step_cosine"]["mean"] <= 1.0 + 1e-6


def test_ddp_benchmark_compares_one_and_two_torchrun_processes(tmp_path):
    r = _check_common(run_benchmark("ddp", tmp_path, quick=True, steps=6), tmp_path / "ddp.json", "ddp")
    assert r["nproc"] == 2 and r["backend"] == "gloo" and r["steps"] == 6
    assert set(r["wall_s"]) == {"1", "2"} and min(r["wall_s"].values()) > 0
    assert r["max_loss_diff"] <= 1e-4  # the tolerance of tests/core/jepa/test_ddp.py
    assert "--nproc-per-node=2 -m rjepa_core.jepa.ddp" in r["launch_command"]


def test_unknown_benchmark_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_benchmark("nope", tmp_path)
    assert BENCHMARKS == ("extraction", "training", "scoring", "generation", "ddp")

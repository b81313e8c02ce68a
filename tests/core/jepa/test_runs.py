"""claim_run: which folder a training run writes into (an interrupted run of the same inputs is taken over)."""

from __future__ import annotations

import json

import pytest

from rjepa_core.jepa.runs import RUN, claim_run, is_unfinished, training_fingerprint


def test_an_unfinished_run_of_the_same_inputs_is_taken_over_and_a_finished_one_is_not(tmp_path):
    fp = training_fingerprint({"optim": {"total_steps": 10}}, "latents-a", None, 1)
    with claim_run(tmp_path, fp, "r1") as first:
        assert (first.run_id, first.resumed_step) == ("r1", None)
        # a second live process with the same inputs does not train into the same folder
        with claim_run(tmp_path, fp, "r2") as other:
            assert other.run_id == "r2"
            other.finish()
    assert is_unfinished(tmp_path / "r1")  # left without finish(): as after a kill
    with claim_run(tmp_path, fp, "r3") as again:
        assert again.run_id == "r1" and again.dir == tmp_path / "r1"
        again.finish()
    assert json.loads((tmp_path / "r1" / RUN).read_text())["state"] == "done"
    with claim_run(tmp_path, fp, "r4") as fresh:
        assert fresh.run_id == "r4"
    other_inputs = training_fingerprint({"optim": {"total_steps": 10}}, "latents-b", None, 1)
    assert other_inputs != fp
    with claim_run(tmp_path, other_inputs, "r5") as changed:
        assert changed.run_id == "r5"  # r4 is unfinished but was made from other latents
    with pytest.raises(FileExistsError), claim_run(tmp_path, fp + "x", "r5"):
        pass

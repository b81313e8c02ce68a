"""`train(...)` under `torchrun --nproc-per-node 2` (gloo, CPU) against one process: real processes, no mocks.

Tolerance: TOL = 1e-4 absolute on per-step losses (≈ 1.3 here) and gradient norms. Two processes compute
the same global-batch loss as one, but not in the same float order: matmuls over 5 and 4 rows instead of 9,
and the gradient is the all-reduced sum of two partial gradients. Measured here over 20 steps: loss
2.4e-7, grad norm 1.8e-6, validation loss 2.4e-7 (OMP_NUM_THREADS / RJEPA_TEST_THREADS 1 and 2), i.e.
float32 rounding; TOL leaves a 50x margin for other BLAS builds. What a wrong implementation gives is far
above it: training on a per-rank batch of 4 instead of the global 7 moves the losses by up to 0.24
(`test_the_tolerance_tells_another_batch_apart` checks > 100 x TOL), forgetting the world-size scaling
halves every reported gradient norm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rjepa_core.jepa.checkpoint import load_checkpoint, load_train_state
from rjepa_core.jepa.trainer import train
from tests.core.jepa import ddp_script

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).with_name("ddp_script.py")
TOTAL = 20
TOL = 1e-4


def _start(out: Path, nproc: int, kill_at: int | None = None, **extra_env: str) -> subprocess.Popen:
    env = {
        **os.environ,
        **extra_env,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "RJEPA_TEST_THREADS": os.environ.get("RJEPA_TEST_THREADS", "1"),
    }
    args = [str(SCRIPT), str(out), str(TOTAL)] + ([str(kill_at)] if kill_at else [])
    if nproc > 1:
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        args = [*launch, *args]
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, **pipe)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=180)
    return proc.returncode, out.decode(errors="replace")


def _history(out: Path) -> list[dict]:
    state = load_train_state(out / "last")
    assert state is not None, f"no resumable state in {out / 'last'}"
    return state["loop"]["history"]


def _series(history: list[dict], kind: str, key: str) -> list[float]:
    return [r[key] for r in history if r["kind"] == kind]


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) and a, (len(a), len(b))
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-process and two-process runs of the same config, data and seed (started side by side)."""
    tmp = tmp_path_factory.mktemp("ddp")
    one, two = _start(tmp / "one", 1), _start(tmp / "two", 2)
    for name, proc in (("one process", one), ("two processes", two)):
        rc, out = _finish(proc)
        assert rc == 0, f"{name} failed:\n{out}"
    return tmp


def test_two_processes_follow_the_one_process_trajectory(runs):
    a, b = _history(runs / "one"), _history(runs / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert _series(b, "train", "step") == list(range(1, TOTAL + 1))
    assert _max_diff(_series(a, "train", "loss"), _series(b, "train", "loss")) <= TOL
    assert _max_diff(_series(a, "train", "grad_norm"), _series(b, "train", "grad_norm")) <= TOL
    assert _max_diff(_series(a, "val", "val_loss"), _series(b, "val", "val_loss")) <= TOL
    # rank 0 alone logged (every step and evaluation) and wrote checkpoints; no temp debris was left
    assert (runs / "two" / "log-rank0.jsonl").read_text().count("\n") == len(b)
    assert not (runs / "two" / "log-rank1.jsonl").exists()
    assert sorted(p.name for p in (runs / "two").iterdir()) == ["best", "last", "log-rank0.jsonl"]


def test_the_tolerance_tells_another_batch_apart(runs, tmp_path):
    """The control that shows TOL can fail: the trajectory of a per-rank batch (4 chains, not 7)."""
    tr, val, neg = ddp_script.data()
    cfg = ddp_script.config(TOTAL).replace(train={"batch_size": 4})
    res = train(cfg, tr, val, tmp_path / "half", negatives=neg, device="cpu")
    ref = _series(_history(runs / "one"), "train", "loss")
    assert _max_diff(ref, _series(res.history, "train", "loss")) > 100 * TOL


def test_a_killed_ddp_run_resumes_with_two_processes_or_one(runs, tmp_path):
    rc, out = _finish(_start(tmp_path / "killed", 2, kill_at=13))
    assert rc != 0, f"rank 0 killed itself at step 13 but torchrun exited 0:\n{out}"
    state = load_train_state(tmp_path / "killed" / "last")
    assert state is not None and state["loop"]["step"] == 10  # the last checkpoint before the kill
    shutil.copytree(tmp_path / "killed", tmp_path / "killed-one")

    rc, out = _finish(_start(tmp_path / "killed", 2))  # resume the DDP state with DDP
    assert rc == 0, out
    a = load_checkpoint(runs / "two" / "last").model.state_dict()
    b = load_checkpoint(tmp_path / "killed" / "last").model.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # same processes, same float path: the resumed run ends where the uninterrupted one did
        assert (a[k] - b[k]).abs().max() <= 1e-6, k
    history = _history(tmp_path / "killed")
    assert _series(history, "train", "step") == list(range(1, TOTAL + 1))
    rows = [json.loads(line) for line in (tmp_path / "killed" / "log-rank0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [*range(1, 14), *range(11, TOTAL + 1)]

    # the same DDP state resumed by one process follows the one-process trajectory
    tr, val, neg = ddp_script.data()
    res = train(ddp_script.config(TOTAL), tr, val, tmp_path / "killed-one", negatives=neg, device="cpu")
    ref = _history(runs / "one")
    assert _max_diff(_series(ref, "train", "loss"), _series(res.history, "train", "loss")) <= TOL
    assert res.steps == TOTAL


def test_a_ddp_warm_start_follows_the_one_process_warm_start(runs, tmp_path):
    """Both start from the one-process run's best checkpoint (the nightly fine-tune), with a fresh schedule."""
    init_from = str(runs / "one" / "best")
    rc, out = _finish(_start(tmp_path / "two", 2, RJEPA_INIT_FROM=init_from))
    assert rc == 0, out
    tr, val, neg = ddp_script.data()
    res = train(ddp_script.config(TOTAL), tr, val, tmp_path / "one", negatives=neg, device="cpu", init_from=init_from)
    a, b = _series(res.history, "train", "loss"), _series(_history(tmp_path / "two"), "train", "loss")
    assert _max_diff(a, b) <= TOL
    cold = _series(_history(runs / "one"), "train", "loss")
    assert a[0] < cold[0] - 100 * TOL  # it did start from the trained weights, not from a fresh init


def test_a_bad_torchrun_environment_gets_a_clear_error(monkeypatch, tmp_path):
    tr, val, neg = ddp_script.data()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="inconsistent torchrun environment"):
        train(ddp_script.config(2), tr, val, tmp_path, device="cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set"):
        train(ddp_script.config(2), tr, val, tmp_path, device="cpu")

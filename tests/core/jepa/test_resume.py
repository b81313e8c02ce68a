import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from rjepa_core.jepa.checkpoint import load_checkpoint, load_train_state

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).with_name("resume_script.py")


def _run(out: Path, total: int, kill_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(SCRIPT), str(out), str(total)] + ([str(kill_at)] if kill_at else [])
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    total = 40
    ref, killed = _run(tmp_path / "ref", total), _run(tmp_path / "killed", total, kill_at=25)
    out_ref, _ = ref.communicate(timeout=120)
    out_killed, _ = killed.communicate(timeout=120)
    assert ref.returncode == 0, out_ref.decode()
    assert killed.returncode == -signal.SIGKILL, out_killed.decode()
    state = load_train_state(tmp_path / "killed" / "last")
    assert state is not None and state["loop"]["step"] == 20  # the last checkpoint before the kill

    resumed = _run(tmp_path / "killed", total)
    out_resumed, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out_resumed.decode()

    a = load_checkpoint(tmp_path / "ref" / "last").model.state_dict()
    b = load_checkpoint(tmp_path / "killed" / "last").model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    assert load_train_state(tmp_path / "killed" / "last")["loop"]["step"] == total
    # resumed history continues the killed one: every train step 1..total appears exactly once
    history = load_train_state(tmp_path / "killed" / "last")["loop"]["history"]
    steps = [r["step"] for r in history if r["kind"] == "train"]
    assert steps == list(range(1, total + 1))
    # nothing half-written is left next to the checkpoints
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")]

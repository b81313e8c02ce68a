"""The sandbox runs honest code and contains hostile code; each OS layer is tested on its own."""

from __future__ import annotations

import socket

import pytest

from rjepa_core.validators.sandbox import run_python


def test_honest_code_runs():
    r = run_python("import math, collections\nprint(math.factorial(5))", timeout=5, memory_mb=256)
    assert r.passed and r.returncode == 0 and r.stdout.strip() == "120" and not r.killed_reason
    assert "audit" in r.isolation


def test_failing_code_is_reported():
    r = run_python("assert 1 == 2, 'nope'", timeout=5, memory_mb=256)
    assert not r.passed and r.returncode == 1 and "AssertionError: nope" in r.stderr


@pytest.mark.parametrize(
    ("code", "reasons"),
    [
        ("while True:\n    pass", {"timeout", "cpu limit"}),
        ("import time\ntime.sleep(60)", {"timeout"}),
        ("x = bytearray(4 * 1024**3)", {"memory limit"}),
        ("import os\nwhile True:\n    os.fork()", {"process limit", "blocked: os.fork", "timeout"}),
        ("open('big.bin', 'wb').write(b'x' * (64 * 1024 * 1024))", {"file size limit"}),
        ("import subprocess\nsubprocess.run(['ls'])", {"blocked: subprocess.Popen"}),
    ],
    ids=["infinite-loop", "sleep", "memory-hog", "fork-bomb", "huge-file", "subprocess"],
)
def test_hostile_code_is_contained(code, reasons):
    r = run_python(code, timeout=2.0, memory_mb=256, file_mb=8)
    assert not r.passed
    assert r.killed_reason in reasons, (r.killed_reason, r.stderr[-500:])
    assert r.duration_s < 10


def test_huge_output_is_capped():
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout=1.5, output_cap=10_000)
    assert r.truncated and len(r.stdout) == 10_000 and not r.passed


def test_writes_outside_the_working_dir_fail(tmp_path):
    target = tmp_path / "escape.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')", timeout=5)
    assert not r.passed and r.killed_reason.startswith("blocked: write outside") and not target.exists()
    r = run_python("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())", timeout=5)
    assert r.passed and r.stdout.strip() == "ok"


def test_parent_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("RJEPA_TEST_SECRET", "sk-parent-secret-0042")
    code = "import os\nprint(dict(os.environ))\nprint(open(f'/proc/{os.getppid()}/environ').read())"
    r = run_python(code, timeout=5)
    assert "sk-parent-secret-0042" not in r.stdout + r.stderr
    assert "RJEPA_TEST_SECRET" not in r.stdout and not r.passed


def test_sockets_are_refused():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        r = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", timeout=5)
    assert not r.passed and r.killed_reason.startswith("blocked: socket")


# The OS layers alone (no audit hook): only where this machine grants them.
def _layers() -> list[str]:
    return run_python("pass", timeout=5, audit=False).isolation


def test_network_namespace_alone_blocks_loopback():
    if "netns" not in _layers():
        pytest.skip("no network namespace here (needs root or unprivileged user namespaces)")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        r = run_python(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", timeout=5, audit=False
        )
    assert not r.passed and ("unreachable" in r.stderr or "refused" in r.stderr), r.stderr[-300:]


def test_read_only_fs_and_hidden_proc_alone(tmp_path):
    if "ro-fs" not in _layers():
        pytest.skip("no read-only mount namespace here (needs root)")
    target = tmp_path / "escape.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')", timeout=5, audit=False)
    assert not r.passed and "Read-only file system" in r.stderr and not target.exists()
    r = run_python("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", timeout=5, audit=False)
    assert not r.passed and "FileNotFoundError" in r.stderr


def test_process_limit_alone():
    if "nproc" not in _layers():
        pytest.skip("process limit not enforced for this uid")
    r = run_python("import os\nwhile True:\n    os.fork()", timeout=3, max_procs=8, audit=False)
    assert r.killed_reason == "process limit", r.stderr[-300:]

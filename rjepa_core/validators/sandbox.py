"""Run untrusted Python in a limited child process and report what happened.

    >>> r = run_python("print(sum(range(10)))", timeout=5.0, memory_mb=256)
    >>> r.passed, r.stdout.strip()
    (True, '45')

What the sandbox does (each layer is tried; `SandboxResult.isolation` lists the ones that applied):

- Always: a fresh temp working dir (deleted afterwards) that is the child's cwd, HOME and TMPDIR;
  a stripped environment (only PATH, LANG, HOME, TMPDIR; none of the parent's variables, so no
  API keys); `python -I -S` (no user site, no site-packages, no PYTHON* variables); a new session
  whose whole process group is SIGKILLed on timeout and after the child exits; rlimits on CPU
  seconds, address space (`memory_mb`), size of any written file (`file_mb`), open files, core
  dumps (0) and, when the real uid is not root, process count; stdout/stderr read through pipes
  and capped (`output_cap` bytes kept, the rest drained and dropped).
- Linux as root (CAP_SYS_ADMIN), as on our machines: a new network namespace (`netns`: only a
  down loopback, so no socket reaches anything, even from native code); a new mount namespace
  (`ro-fs`) where every mount is read-only except the working dir and /proc is hidden under an
  empty tmpfs (so the parent's /proc/<pid>/environ is unreadable); the real uid is switched to
  `nobody` so RLIMIT_NPROC applies (`nproc`: root is exempt from it), then every capability is
  dropped (`no-caps`, bounding set included, plus no_new_privs), so the child cannot undo the
  mounts or the namespaces.
- Linux without root: an unprivileged user + network namespace when the kernel allows it
  (`netns`), else no OS-level network fence.
- Always, inside the child: a Python audit hook (`audit`) that refuses sockets, subprocesses,
  exec/spawn/system, ctypes library loading, and opening files for writing outside the working
  dir; `os.set*uid`/`setsid` are removed.

What it does not guarantee: the audit hook is a Python-level fence (native extension code that is
already importable can bypass it); without root there is no read-only filesystem, the parent's
readable files stay readable and, where user namespaces are disabled, only the audit hook blocks
the network; the effective uid stays 0 under root (files are read as root; the fs is read-only);
there is no seccomp filter and no cgroup, so memory is bounded by RLIMIT_AS per process and the
number of processes by RLIMIT_NPROC (shared by concurrent sandboxes of the same uid); CPU time
is bounded per process and wall time by `timeout`. It is meant for model-written solutions and
tests, not for adversaries who target the kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).with_name("_sandbox_child.py")


@dataclass
class SandboxResult:
    passed: bool  # exit status 0 and not killed
    returncode: int | None  # child exit status (negative: killed by that signal)
    stdout: str  # first `output_cap` bytes of stdout
    stderr: str  # first `output_cap` bytes of stderr
    timed_out: bool  # wall-clock timeout hit
    killed_reason: str = ""  # timeout | cpu limit | memory limit | file size limit | blocked: <what> | ""
    duration_s: float = 0.0  # wall time of the child
    isolation: list[str] = field(default_factory=list)  # layers that applied (netns, ro-fs, nproc, no-caps, audit)
    truncated: bool = False  # some output was dropped by the cap


class _CappedReader(threading.Thread):
    """Drain a pipe, keeping only its first `cap` bytes so huge output cannot fill our memory."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.cap, self.buf, self.dropped = stream, cap, bytearray(), 0

    def run(self) -> None:
        while chunk := self.stream.read(65536):
            room = self.cap - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")


def _reason(rc: int | None, timed_out: bool, stderr: str, truncated: bool) -> str:
    if timed_out:
        return "timeout"
    if rc == -signal.SIGXCPU or rc == -signal.SIGKILL:
        return "cpu limit"
    if rc == -signal.SIGXFSZ:
        return "file size limit"
    if "SandboxBlocked" in stderr:
        line = next(ln for ln in reversed(stderr.splitlines()) if "SandboxBlocked" in ln)
        return "blocked: " + line.split("SandboxBlocked:", 1)[1].strip()
    if "File too large" in stderr:
        return "file size limit"
    if "MemoryError" in stderr:
        return "memory limit"
    if "BlockingIOError" in stderr and "fork" in stderr:
        return "process limit"
    if truncated and rc not in (0, None):
        return "output limit"
    return ""


def run_python(
    code: str,
    timeout: float = 5.0,
    memory_mb: int = 512,
    *,
    file_mb: int = 16,
    max_procs: int = 16,
    output_cap: int = 64_000,
    files: dict[str, str] | None = None,
    audit: bool = True,
) -> SandboxResult:
    """Run `code` as `__main__` in a sandboxed `python -I -S` child (see the module docstring).

    `files` are extra text files put in the working dir; `audit=False` leaves out the Python
    audit hook (only to test the OS-level layers on their own).
    """
    import time

    workdir = tempfile.mkdtemp(prefix="rjepa-sandbox-")
    try:
        (Path(workdir) / "main.py").write_text(code, encoding="utf-8")
        for name, text in (files or {}).items():
            (Path(workdir) / name).write_text(text, encoding="utf-8")
        report = Path(workdir) / ".isolation.json"
        cfg = {
            "workdir": workdir,
            "cpu_s": int(timeout) + 1,
            "memory_mb": memory_mb,
            "file_mb": file_mb,
            "max_procs": max_procs,
            "report": str(report),
            "audit": audit,
        }
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_HERE), json.dumps(cfg)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        out, err = _CappedReader(proc.stdout, output_cap), _CappedReader(proc.stderr, output_cap)
        out.start()
        err.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        proc.wait()
        out.join(timeout=2.0)
        err.join(timeout=2.0)
        duration = time.monotonic() - t0
        isolation = json.loads(report.read_text()) if report.exists() else []
        truncated = bool(out.dropped or err.dropped)
        rc = None if timed_out else proc.returncode
        stderr = err.text()
        reason = _reason(rc, timed_out, stderr, truncated)
        return SandboxResult(
            passed=rc == 0 and not reason,
            returncode=rc,
            stdout=out.text(),
            stderr=stderr,
            timed_out=timed_out,
            killed_reason=reason,
            duration_s=duration,
            isolation=isolation,
            truncated=truncated,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    """SIGKILL the child's whole process group (forked grandchildren included)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

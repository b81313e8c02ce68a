"""Atomic file writes: a crash never leaves a half-written file that a reader takes as whole.

    >>> with atomic_path("/tmp/x.json") as tmp:
    ...     Path(tmp).write_text("{}")
    >>> atomic_write_text("/tmp/y.txt", "hello")
    >>> replace_dir("/tmp/z", lambda tmp: (tmp / "a.json").write_text("{}"))
    PosixPath('/tmp/z')

The temporary file lives in the destination folder (same filesystem) so `os.replace` is atomic.
After each commit the hooks of `add_commit_hook` run with the committed path (object storage publishes
through one: rjepa_core.store.remote).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_COMMIT_HOOKS: list[Callable[[Path], Any]] = []


def add_commit_hook(hook: Callable[[Path], Any]) -> None:
    """Run `hook(path)` after every atomic commit of a file or folder (once per hook)."""
    if hook not in _COMMIT_HOOKS:
        _COMMIT_HOOKS.append(hook)


def notify_commit(path: str | Path) -> None:
    """Tell the hooks that `path` now holds a complete file or folder (writers outside this module call it too)."""
    for hook in list(_COMMIT_HOOKS):
        hook(Path(path))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temp path next to `path`; on success fsync and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; readers running as another user need the usual mode
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    notify_commit(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def is_temp_file(path: str | Path) -> bool:
    """True for files left by an interrupted atomic write (readers must skip them).

    Ours are `.<name>.<random>.tmp`; safetensors' writer (Rust `tempfile`) stages its own `.tmpXXXXXX`
    beside the target, which a SIGKILL during `save_file` leaves behind too.
    """
    name = Path(path).name
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith(".tmp"))


def old_dir(path: str | Path) -> Path:
    """Where `replace_dir` keeps the previous folder while it swaps in the new one."""
    path = Path(path)
    return path.parent / f".{path.name}.old"


def replace_dir(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Build a folder with `write(tmp)` in a temporary sibling, fsync its files, then swap it into `path`.

    Readers never see half a folder; if a crash hits between the two renames, the previous folder is
    still whole at `old_dir(path)` (readers may fall back to it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = old_dir(path)
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    notify_commit(path)
    return path

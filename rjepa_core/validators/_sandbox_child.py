"""Launcher executed as `python -I -S _sandbox_child.py CONFIG_JSON` by `sandbox.run_python`.

It confines itself (namespaces, read-only mounts, rlimits, uid switch, capability drop, audit
hook), then runs `main.py` of its working dir as `__main__`. Stdlib only: it runs without site.
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, NOBODY = 24, 38, 65534

cfg = json.loads(sys.argv[1])
workdir = os.path.realpath(cfg["workdir"])
applied = []
libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("prop", ctypes.c_uint64),
        ("fd", ctypes.c_uint64),
    ]


def _check(rc, what):
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _mount(src, dst, fstype, flags, data=None):
    enc = [None if x is None else x.encode() for x in (src, dst, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {dst}")


def _setattr(path, attr_set, attr_clr, flags):
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    rc = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr))
    _check(rc, f"mount_setattr {path}")


def confine_linux_root():
    _check(libc.unshare(CLONE_NEWNET), "unshare(net)")
    applied.append("netns")
    try:
        _check(libc.unshare(CLONE_NEWNS), "unshare(mnt)")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=555")  # hide other pids' environ
        _mount(workdir, workdir, None, MS_BIND | MS_REC)
        _setattr("/", MOUNT_ATTR_RDONLY, 0, AT_RECURSIVE)
        _setattr(workdir, 0, MOUNT_ATTR_RDONLY, 0)
        applied.append("ro-fs")
    except OSError as e:  # older kernels without mount_setattr: network fence only
        print(f"sandbox: read-only fs not applied ({e})", file=sys.stderr)


def drop_root():
    # Root is exempt from RLIMIT_NPROC: a non-root real uid makes the process limit bite.
    os.setresgid(NOBODY, os.getegid(), os.getegid())
    os.setresuid(NOBODY, 0, 0)
    applied.append("nproc")
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    applied.append("no-caps")


def set_limits():
    mb = 1024 * 1024
    limits = [
        (resource.RLIMIT_CPU, cfg["cpu_s"]),
        (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, cfg["max_procs"]),
    ]
    for what, value in limits:
        resource.setrlimit(what, (value, value))


if libc is not None and os.geteuid() == 0:
    try:
        confine_linux_root()
    except OSError as e:
        print(f"sandbox: namespaces not applied ({e})", file=sys.stderr)
elif libc is not None and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
    applied.append("netns")
set_limits()
if libc is not None and os.geteuid() == 0:
    try:
        drop_root()
    except OSError as e:  # e.g. a container without CAP_SETUID/CAP_SETPCAP: run with the layers we have
        print(f"sandbox: uid switch / capability drop not applied ({e})", file=sys.stderr)
os.chdir(workdir)
if cfg["audit"]:
    applied.append("audit")
with open(cfg["report"], "w") as f:
    json.dump(applied, f)


class SandboxBlocked(PermissionError):
    pass


_BLOCKED = ("socket.", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "ctypes.dlopen")
_prefix = workdir + os.sep


def _hook(event, args):
    if event.startswith(_BLOCKED):
        raise SandboxBlocked(event)
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1], args[2]
        writing = (mode and any(c in mode for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        path = os.path.realpath(os.fsdecode(args[0]))
        if writing and not (path + os.sep).startswith(_prefix) and path != os.devnull:
            raise SandboxBlocked(f"write outside the sandbox dir: {path}")
        if path.startswith("/proc/") and path.endswith("/environ"):
            raise SandboxBlocked(f"read {path}")


for _name in ("setuid", "seteuid", "setreuid", "setresuid", "setgid", "setresgid", "setsid"):
    if hasattr(os, _name):
        delattr(os, _name)
source = open(os.path.join(workdir, "main.py"), encoding="utf-8").read()
code = compile(source, os.path.join(workdir, "main.py"), "exec")
sys.argv = ["main.py"]
sys.path.insert(0, workdir)
if cfg["audit"]:
    sys.addaudithook(_hook)
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})

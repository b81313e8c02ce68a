"""A real PostgreSQL 15 server in a temporary directory on 127.0.0.1, for the Dagster instance tests.

Debian's server binaries (`postgresql-15`; `.ci/run` installs it). initdb refuses to run as root, so
as root every server command runs as the unprivileged `postgres` user (or `nobody`) through
`runuser`, in a data directory that user owns. Only the server this object started is ever stopped.

    with PostgresServer.started() as pg:
        env = pg.env()  # DAGSTER_PG_HOST / _PORT / _USER / _PASSWORD / _DB
        pg.restart()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path(os.environ.get("RJEPA_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER, PASSWORD, DB = "rjepa", "rjepa-test", "dagster"


def pg_missing() -> str | None:
    """Why the server cannot start here (None when it can)."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"{PG_BIN / tool} not found: apt-get install -y postgresql-15 (or set RJEPA_PG_BIN)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _os_user() -> str | None:
    """The unprivileged account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists for initdb")


class PostgresServer:
    def __init__(self, base: Path, port: int, os_user: str | None):
        self.base, self.port, self.os_user = base, port, os_user
        self.data = base / "data"
        self.log = base / "server.log"

    def _run(self, *args: str | Path, timeout: float = 60) -> None:
        cmd = [str(a) for a in args]
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{log}")

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.os_user:
            u = pwd.getpwnam(self.os_user)
            for p in (self.base, pwfile):
                os.chown(p, u.pw_uid, u.pw_gid)
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", USER, "--pwfile", pwfile, "-A", "scram-sha-256",
                  "--no-sync", "-E", "UTF8", "--locale", "C")  # fmt: skip
        # TCP on 127.0.0.1 only; the Unix socket stays inside the data directory
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.data}'\n"
                    "fsync = off\nmax_connections = 50\n")  # fmt: skip

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """Stop this server (fast shutdown: open sessions are rolled back and disconnected)."""
        if (self.data / "postmaster.pid").exists():
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def create_db(self, name: str = DB) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def env(self, db: str = DB) -> dict[str, str]:
        """What deploy/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": USER,
            "DAGSTER_PG_PASSWORD": PASSWORD,
            "DAGSTER_PG_DB": db,
        }

    @classmethod
    @contextlib.contextmanager
    def started(cls) -> Iterator[PostgresServer]:
        if reason := pg_missing():
            raise RuntimeError(reason)
        os_user = _os_user()
        # as root, under /tmp: the server's user must be able to reach its directory (TMPDIR may be root's own)
        base = Path(tempfile.mkdtemp(prefix="rjepa-pg-", dir="/tmp" if os_user else None))
        server = cls(base, _free_port(), os_user)
        try:
            server.init()
            server.start()
            server.create_db(DB)
            yield server
        finally:
            try:
                server.stop()
            except Exception:
                if pid := server.pid():  # pg_ctl could not stop it: immediate shutdown of this server only
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
                raise
            finally:
                shutil.rmtree(base, ignore_errors=True)

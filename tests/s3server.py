"""A real S3-compatible HTTP server on 127.0.0.1 for the object-storage tests: moto's standalone server.

`python -m moto.server` (moto[server]) in a subprocess on a free port: boto/s3fs talk to it over HTTP
exactly as to S3 or MinIO (no in-process mock). Only the server this object started is ever stopped.

    with S3Server.started() as s3:
        env = s3.env()          # AWS_ENDPOINT_URL + dummy credentials
        s3.make_bucket("b")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, port: int, proc: subprocess.Popen, log):
        self.port, self.proc, self.log = port, proc, log
        self.endpoint = f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "rjepa-test",
            "AWS_SECRET_ACCESS_KEY": "rjepa-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata endpoint
        }

    def filesystem(self):
        import s3fs

        e = self.env()
        return s3fs.S3FileSystem(
            key=e["AWS_ACCESS_KEY_ID"],
            secret=e["AWS_SECRET_ACCESS_KEY"],
            client_kwargs={"endpoint_url": self.endpoint},
            skip_instance_cache=True,
        )

    def make_bucket(self, name: str) -> str:
        self.filesystem().mkdir(name)
        return name

    @classmethod
    @contextlib.contextmanager
    def started(cls, timeout: float = 30) -> Iterator[S3Server]:
        port = free_port()
        log = tempfile.TemporaryFile()  # werkzeug logs every request: a pipe nobody reads would fill up
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        server = cls(port, proc, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"moto server exited ({proc.returncode}): {log.read().decode()[-2000:]}")
                try:
                    urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"moto server on {server.endpoint} did not answer in {timeout} s") from None
                    time.sleep(0.1)
            yield server
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()


class Bucket:
    """A fresh bucket on the test server, with one local cache folder per simulated machine."""

    def __init__(self, server: S3Server, name: str, tmp: Path, monkeypatch):
        self.server, self.name, self.tmp, self.monkeypatch = server, name, tmp, monkeypatch
        self.uri = f"s3://{name}/rjepa"
        self.fs = server.filesystem()

    def cache(self, machine: str) -> Path:
        return self.tmp / f"cache-{machine}"

    def on(self, machine: str) -> None:
        """Make `machine`'s cache the one layouts built from now on use (RJEPA_STORAGE_CACHE)."""
        self.monkeypatch.setenv("RJEPA_STORAGE_CACHE", str(self.cache(machine)))

    def layout(self, machine: str):
        from rjepa_core.store.layout import StorageLayout

        self.on(machine)
        return StorageLayout(self.uri)

    def keys(self) -> list[str]:
        return sorted(self.fs.find(self.name, refresh=True))


@pytest.fixture(scope="session")
def s3_server():
    with S3Server.started() as server:
        yield server


@pytest.fixture
def bucket(s3_server, tmp_path, monkeypatch) -> Bucket:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    name = f"rjepa-{uuid.uuid4().hex[:10]}"
    s3_server.make_bucket(name)
    return Bucket(s3_server, name, tmp_path, monkeypatch)

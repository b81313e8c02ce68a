"""The real S3-compatible server (moto's, on 127.0.0.1) and a fresh bucket per test, for the object-storage tests."""

from tests.s3server import bucket, s3_server  # noqa: F401

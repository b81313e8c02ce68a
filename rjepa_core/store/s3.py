"""The bucket side of object storage: s3:// URIs, the local cache folder, the s3fs filesystem, clear errors.

    >>> split_uri("s3://rjepa/prod")
    ('rjepa', 'prod')
    >>> fs = make_filesystem("s3://rjepa/prod")     # AWS_ENDPOINT_URL=http://minio:9000 for MinIO

Credentials come the usual botocore way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an
instance role). Timeouts and retries are short, so a wrong endpoint fails in seconds with what to do.
"""

from __future__ import annotations

import os
from pathlib import Path


class StorageError(RuntimeError):
    """The object store cannot be used as configured; the message says what to do."""


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'prefix') of s3://bucket/prefix (prefix may be empty)."""
    bucket, _, prefix = uri.partition("://")[2].partition("/")
    if not bucket:
        raise ValueError(f"storage root {uri!r} names no bucket: use s3://<bucket>/<prefix>")
    return bucket, prefix.strip("/")


def cache_dir(uri: str) -> Path:
    """The local working copy of `uri`: $RJEPA_STORAGE_CACHE, else ~/.cache/rjepa/s3/<bucket>/<prefix>."""
    bucket, prefix = split_uri(uri)
    explicit = os.environ.get("RJEPA_STORAGE_CACHE")
    base = Path(explicit) if explicit else Path.home() / ".cache" / "rjepa" / "s3" / bucket / prefix
    return base.expanduser().resolve()


def make_filesystem(uri: str):
    """An s3fs filesystem for `uri`: AWS_ENDPOINT_URL for MinIO, moto and other S3-compatible stores, else AWS."""
    try:
        import s3fs
    except ImportError as e:
        raise StorageError(f"storage root {uri!r} needs s3fs: pip install -e '.[s3]' (s3fs==2026.9.0)") from e
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    config = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}
    # No listings cache: another machine's publish must be visible to the next info/cat (s3fs's cache would
    # answer "not found" for a manifest that appeared since the last listing of its folder).
    fs = s3fs.S3FileSystem(
        client_kwargs=client_kwargs, config_kwargs=config, skip_instance_cache=True, use_listings_cache=False
    )
    fs.retries = 2  # s3fs's own retry loop (default 5, with backoff) on top of botocore's: fail fast, clearly
    return fs


def explain(uri: str, bucket: str, doing: str, e: BaseException) -> StorageError:
    """A StorageError saying what to do about `e`, raised while `doing` something with `uri`."""
    text, name = str(e), type(e).__name__
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    where = f"{doing} {uri} (endpoint {endpoint})"
    if "NoCredentials" in name or "Unable to locate credentials" in text or "credentials" in text.lower():
        why = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    elif "bucket does not exist" in text or "NoSuchBucket" in text:
        why = f"bucket {bucket!r} does not exist: create it (e.g. `mc mb store/{bucket}`)"
    elif isinstance(e, PermissionError) or "AccessDenied" in text or "Forbidden" in text or "403" in text:
        why = "access denied: check the credentials and the bucket policy (read, write, list, delete)"
    elif any(w in name for w in ("Connect", "Endpoint", "Timeout")) or "connect" in text.lower():
        why = "cannot reach the endpoint: check AWS_ENDPOINT_URL (e.g. http://127.0.0.1:9000) and the network"
    else:
        why = f"{name}: {text}"
    return StorageError(f"{where}: {why}")

"""Object storage over fsspec: a local directory or any ``s3://`` endpoint, one code path.

:class:`Warehouse` owns the table layout (``<root>/<table>/batch_id=<id>/part-0.parquet``)
and the write discipline that makes a killed run harmless:

- every object is written atomically (one S3 PUT; locally ``<root>/_tmp/<uuid>`` renamed
  into place), so a reader sees the old table or the new one, never half a file;
- per-file results of a running batch go to ``<root>/_staging/<table>/batch_id=<id>/`` and
  are folded into the visible table when the batch step ends. A run killed midway leaves
  the visible table as it was, and the next run picks the staged files up instead of
  recomputing them.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import fsspec
import polars as pl

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = (ConnectionError, TimeoutError, OSError)


class StorageUnavailable(RuntimeError):
    """The object store cannot be reached or refuses us; the message names the endpoint."""


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> S3Options:
        """botocore's standard variables, read when called."""
        from . import settings

        return cls(
            endpoint_url=settings.env("AWS_ENDPOINT_URL"),
            access_key_id=settings.env("AWS_ACCESS_KEY_ID"),
            secret_access_key=settings.env("AWS_SECRET_ACCESS_KEY"),
            region=settings.env("AWS_DEFAULT_REGION"),
        )

    def storage_options(self) -> dict:
        opts: dict = {"config_kwargs": {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5}}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.access_key_id:
            opts["key"] = self.access_key_id
            opts["secret"] = self.secret_access_key
        if self.region:
            opts["client_kwargs"] = {"region_name": self.region}
        return opts


def split_uri(uri: str) -> tuple[str, str]:
    """'s3://b/k' -> ('s3', 'b/k'); '/x/y' or 'file:///x/y' -> ('file', '/x/y')."""
    protocol, path = fsspec.core.split_protocol(uri)
    if protocol in (None, "file", "local"):
        return "file", posixpath.abspath(path) if path.startswith("/") else str(_abspath(path))
    return protocol, path


def _abspath(path: str) -> str:
    import os

    return os.path.abspath(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def filesystem(uri: str, s3: S3Options | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    protocol, path = split_uri(uri)
    if protocol == "file":
        return fsspec.filesystem("file", auto_mkdir=True), path
    if protocol in ("s3", "s3a"):
        return fsspec.filesystem("s3", **(s3 or S3Options()).storage_options()), path
    return fsspec.filesystem(protocol), path


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def with_retries(fn: Callable[[], T], *, what: str, endpoint: str, attempts: int = 4, base_delay: float = 0.5) -> T:
    """Run ``fn``; retry transient I/O errors with exponential backoff; name the endpoint when
    giving up (a missing file is not transient and is raised at once)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except PermissionError as exc:
            raise StorageUnavailable(f"{what}: access denied by {endpoint} ({exc})") from None
        except RETRYABLE as exc:
            if attempt == attempts:
                raise StorageUnavailable(
                    f"{what}: cannot reach {endpoint} after {attempts} attempts ({type(exc).__name__}: {exc})"
                ) from None
            delay = base_delay * 2 ** (attempt - 1)
            log.warning("%s failed (%s), retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# -- botocore calls (listings made by the drop sensor) --------------------------------------
# S3 error codes worth another attempt: server-side trouble and throttling.
TRANSIENT_S3_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
AUTH_S3_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "403",
    }
)


def s3_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None if code is None else str(code)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, S3 5xx and throttling."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError  # connection closed, read timeouts

    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    code = s3_error_code(exc)
    if code is not None:
        return code in TRANSIENT_S3_CODES
    return isinstance(exc, RETRYABLE) and not isinstance(exc, FileNotFoundError | PermissionError)


def describe_s3_error(exc: BaseException, *, endpoint: str, bucket: str | None) -> str:
    """One line an operator can act on: what failed, where, and the likely fix."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    where = f"bucket {bucket!r} at {endpoint}" if bucket else endpoint
    code = s3_error_code(exc)
    if code == "NoSuchBucket" and bucket:
        return f"bucket {bucket!r} does not exist at {endpoint}"
    if isinstance(exc, NoCredentialsError):
        return f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if code in AUTH_S3_CODES:
        return f"access denied to {where} ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, BotoCoreError | OSError):
        return f"cannot reach {where} ({type(exc).__name__}: {exc})"
    return f"S3 error from {where} ({code or type(exc).__name__}: {exc})"


def s3_call(
    fn: Callable[[], T],
    *,
    what: str,
    endpoint: str,
    bucket: str | None = None,
    attempts: int = 3,
    base_delay: float = 0.5,
) -> T:
    """Run one botocore call; retry transient errors with exponential backoff (on top of
    botocore's own retries); turn the rest into :class:`StorageUnavailable` naming the
    endpoint and bucket. ``NoSuchKey`` / 404 on an object is raised as FileNotFoundError."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if s3_error_code(exc) in ("NoSuchKey", "404", "NotFound"):  # HEAD of a missing object
                raise FileNotFoundError(what) from None
            if is_transient(exc) and attempt < attempts:
                delay = base_delay * 2 ** (attempt - 1)
                log.warning("%s failed (%s), retrying in %.1f s", what, exc, delay)
                time.sleep(delay)
                continue
            message = describe_s3_error(exc, endpoint=endpoint, bucket=bucket)
            if is_transient(exc):
                message += f" after {attempts} attempts"
            raise StorageUnavailable(f"{what}: {message}") from None
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=8)
def s3_client(s3: S3Options):
    """A botocore S3 client for ``s3`` (thread-safe, cached: creating one costs ~50 ms).
    botocore does not retry: :func:`s3_call` does, so attempts and backoff are known."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region or "us-east-1",
        config=Config(
            connect_timeout=3, read_timeout=20, retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=16
        ),
    )


class Warehouse:
    """Tables and audio objects under one root (local path or s3://bucket/prefix)."""

    def __init__(self, root: str, s3: S3Options | None = None):
        self.root_uri = root.rstrip("/")
        self.s3 = s3 or S3Options()
        self.fs, self.root = filesystem(self.root_uri, self.s3)
        self.is_local = is_local(self.fs)
        self.endpoint = self.root if self.is_local else (self.s3.endpoint_url or "AWS S3")

    def __repr__(self) -> str:
        return f"Warehouse({self.root_uri!r})"

    # -- paths -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return join_uri(self.root, *parts)

    def uri(self, path: str) -> str:
        return path if self.is_local else f"s3://{path}"

    def table_dir(self, table: str, batch_id: str | None = None) -> str:
        return self.path(table, f"batch_id={batch_id}") if batch_id else self.path(table)

    def table_file(self, table: str, batch_id: str | None = None) -> str:
        return join_uri(self.table_dir(table, batch_id), "part-0.parquet")

    def staging_dir(self, table: str, batch_id: str) -> str:
        return self.path("_staging", table, f"batch_id={batch_id}")

    def audio_path(self, media_id: str) -> str:
        return self.path("audio_16k", media_id[:2], f"{media_id}.flac")

    # -- primitive I/O ---------------------------------------------------------------------
    def _io(self, fn: Callable[[], T], what: str) -> T:
        return with_retries(fn, what=what, endpoint=self.endpoint)

    def check_reachable(self) -> None:
        """Fail fast, with the endpoint in the message, if the root cannot be used."""

        def probe():
            if self.is_local:
                self.fs.makedirs(self.root, exist_ok=True)
            else:
                bucket = self.root.split("/", 1)[0]
                if not self.fs.exists(bucket):
                    raise StorageUnavailable(f"bucket {bucket!r} does not exist at {self.endpoint}")
                self.fs.ls(self.root) if self.fs.exists(self.root) else None

        try:
            self._io(probe, what=f"opening warehouse {self.root_uri}")
        except StorageUnavailable:
            raise
        except Exception as exc:  # botocore raises its own hierarchy for DNS/refused/auth
            raise StorageUnavailable(f"opening warehouse {self.root_uri} at {self.endpoint}: {exc}") from None

    def exists(self, path: str) -> bool:
        return self._io(lambda: self.fs.exists(path), what=f"checking {path}")

    def put_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically.

        On S3 one PUT: an object appears whole or not at all (s3fs switches to a multipart
        upload for large bodies, which also becomes visible only when completed). Locally a
        temporary file under ``<root>/_tmp/`` is renamed into place."""
        if not self.is_local:
            self._io(lambda: self.fs.pipe_file(path, data), what=f"writing {path}")
            return
        tmp = self.path("_tmp", uuid.uuid4().hex)

        def write():
            self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            os.replace(tmp, path)

        try:
            self._io(write, what=f"writing {path}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_bytes(self, path: str) -> bytes:
        return self._io(lambda: self.fs.cat_file(path), what=f"reading {path}")

    def get_if_exists(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none: one GET on S3 (s3fs would add a
        HEAD, and a listing when the key is missing). Tables, staged rows, index entries."""
        if self.is_local:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        bucket, key = path.split("/", 1)
        client = s3_client(self.s3)
        try:
            return s3_call(
                lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(),
                what=f"reading {path}",
                endpoint=self.endpoint,
                bucket=bucket,
            )
        except FileNotFoundError:
            return None

    def remove(self, path: str, recursive: bool = False) -> None:
        if self.fs.exists(path):
            self._io(lambda: self.fs.rm(path, recursive=recursive), what=f"removing {path}")

    # -- tables ----------------------------------------------------------------------------
    def write_table(self, table: str, df: pl.DataFrame, batch_id: str | None = None) -> str:
        buf = io.BytesIO()
        df.write_parquet(buf, compression="zstd", statistics=True)
        path = self.table_file(table, batch_id)
        self.put_bytes(path, buf.getvalue())
        return path

    def read_table(self, table: str, batch_id: str | None = None) -> pl.DataFrame | None:
        data = self.get_if_exists(self.table_file(table, batch_id))
        return None if data is None else pl.read_parquet(io.BytesIO(data))

    def stage(self, table: str, batch_id: str, key: str, df: pl.DataFrame) -> None:
        buf = io.BytesIO()
        df.write_parquet(buf)
        self.put_bytes(join_uri(self.staging_dir(table, batch_id), f"{key}.parquet"), buf.getvalue())

    def files_under(self, d: str) -> list[str]:
        """Every object below the folder ``d``: one listing request per 1,000 on S3 (s3fs's
        ``find`` adds a HEAD and a second listing when there are none)."""
        if self.is_local:
            try:
                return self.fs.find(d)
            except FileNotFoundError:
                return []
        bucket, key = d.split("/", 1)
        client = s3_client(self.s3)

        def list_all():
            paths = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
                paths += [f"{bucket}/{o['Key']}" for o in page.get("Contents", [])]
            return paths

        return s3_call(list_all, what=f"listing {d}", endpoint=self.endpoint, bucket=bucket)

    def staged(self, table: str, batch_id: str) -> dict[str, pl.DataFrame]:
        """Results staged by an earlier, unfinished run of this batch: key -> rows."""
        paths = self.files_under(self.staging_dir(table, batch_id))
        out = {}
        for p in paths:
            if p.endswith(".parquet") and (data := self.get_if_exists(p)) is not None:
                out[posixpath.basename(p)[: -len(".parquet")]] = pl.read_parquet(io.BytesIO(data))
        return out

    def clear_staging(self, table: str, batch_id: str) -> None:
        """Delete the staged files (one listing when there are none)."""
        d = self.staging_dir(table, batch_id)
        paths = self.files_under(d)
        if paths:
            self._io(lambda: self.fs.rm(paths), what=f"removing {d}")
        if self.is_local and self.fs.exists(d):
            self.fs.rm(d, recursive=True)

    def batch_ids(self, table: str, prefix: str = "") -> list[str]:
        d = self.path(table)
        try:
            entries = self._io(lambda: self.fs.ls(d, detail=False), what=f"listing {d}")
        except FileNotFoundError:
            return []
        ids = []
        for e in entries:
            name = posixpath.basename(e.rstrip("/"))
            if name.startswith("batch_id=") and name[len("batch_id=") :].startswith(prefix):
                ids.append(name[len("batch_id=") :])
        return sorted(ids)

    def scan(self, table: str) -> pl.DataFrame | None:
        """The whole table across batches (small tables and tests; analysts use scan_parquet)."""
        frames = [f for b in self.batch_ids(table) if (f := self.read_table(table, b)) is not None]
        return pl.concat(frames, how="vertical_relaxed") if frames else None


@dataclass(frozen=True)
class SourceObject:
    uri: str  # what is recorded in the tables (s3://bucket/key or an absolute local path)
    relative: str  # path below the drop root, '/'-separated
    size_bytes: int


def list_source(source_uri: str, s3: S3Options | None = None) -> list[SourceObject]:
    """Every object below ``source_uri`` (recursively), sorted by relative path."""
    fs, root = filesystem(source_uri, s3)
    root = root.rstrip("/")
    local = is_local(fs)
    endpoint = root if local else ((s3.endpoint_url if s3 else None) or "AWS S3")
    if local and not fs.isdir(root):
        raise FileNotFoundError(root)
    try:
        found = with_retries(lambda: fs.find(root, detail=True), what=f"listing {source_uri}", endpoint=endpoint)
    except (StorageUnavailable, FileNotFoundError):
        raise
    except Exception as exc:  # botocore: NoCredentialsError, EndpointConnectionError, ClientError ...
        raise StorageUnavailable(f"listing {source_uri} at {endpoint}: {type(exc).__name__}: {exc}") from None
    out = []
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = path[len(root) :].lstrip("/")
        uri = path if local else f"s3://{path}"
        out.append(SourceObject(uri=uri, relative=rel, size_bytes=int(info.get("size") or 0)))
    return sorted(out, key=lambda o: o.relative)


def open_source(uri: str, s3: S3Options | None = None):
    fs, path = filesystem(uri, s3)
    return fs.open(path, "rb")


def iter_chunks(f, size: int = 8 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk

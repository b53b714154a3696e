"""Two object stores behind one interface: a local folder and an S3 bucket.

A *path* is what the backend stores under: an absolute local path, or ``bucket/key`` on S3
(``s3://bucket/key`` is accepted too, so URIs recorded in the tables can be read back).
Both backends answer the same calls with the same meaning:

- ``get_if_exists(path)``: the bytes, or None when nothing is there (S3: one GET);
- ``get_bytes(path)``: the bytes, FileNotFoundError when nothing is there (S3: one GET);
- ``put_bytes(path, data)``: atomic; a reader sees the old object or the new one, never half
  (S3: one PUT; locally a temporary file under ``<root>/_tmp/`` renamed into place);
- ``exists(path)``: whether an object (a file) is at ``path`` (S3: one HEAD);
- ``listing(dir)`` / ``files_under(dir)``: every object below ``dir``, recursively, as
  ``(path, size)`` / paths; [] when there is none (S3: one listing per 1,000 objects);
- ``list_names(dir)``: names of ``dir``'s immediate children, files and folders; [] when
  missing (S3: one delimited listing per 1,000 names);
- ``remove(path | paths)``: delete, missing ones ignored (S3: one request per 1,000);
- ``remove_dir(dir)``: delete everything below ``dir`` (S3: one listing when there is none);
- ``move(path, dest)``: move one object (S3: a copy then a delete; locally a rename);
- ``check_reachable()``: fail fast with the endpoint in the message (S3: one listing);
- ``uri(path)``: what the tables record (an absolute path, or ``s3://bucket/key``).

Every call is retried here (:mod:`.retries`, one :class:`~.retries.RetryPolicy` per backend,
``OPENTRANSCRIBE_STORAGE_RETRY_S`` seconds by default), never by callers; only transient
errors are retried, the others are raised at once as their own :class:`~.retries.StorageError`
(access denied, missing bucket, invalid key, not a directory, disk full). The S3 backend speaks
botocore directly: one request per call, no listing cache to go stale in a long-lived process.
S3 keys with ``.`` or ``..`` segments are refused before any request (:class:`InvalidKey`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import fsspec

from .retries import InvalidKey, RetryPolicy, StorageUnavailable, s3_call, with_retries

T = TypeVar("T")

DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> S3Options:
        """botocore's standard variables (``AWS_ENDPOINT_URL``, ...), read when called."""
        from .. import settings

        return cls(
            endpoint_url=settings.s3_endpoint_url(),
            access_key_id=settings.s3_access_key_id(),
            secret_access_key=settings.s3_secret_access_key(),
            region=settings.s3_region(),
        )

    def storage_options(self) -> dict:
        """fsspec/s3fs options (streaming reads of source objects)."""
        # source objects stream through s3fs: botocore retries them (5 attempts, backing off about 15 s at most)
        opts: dict = {"config_kwargs": {"retries": {"max_attempts": 5, "mode": "standard"}, "connect_timeout": 5}}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.access_key_id:
            opts["key"] = self.access_key_id
            opts["secret"] = self.secret_access_key
        if self.region:
            opts["client_kwargs"] = {"region_name": self.region}
        return opts


@functools.lru_cache(maxsize=8)
def s3_client(s3: S3Options):
    """A botocore S3 client for ``s3`` (thread-safe, cached: creating one costs ~50 ms).
    botocore does not retry: :func:`~.retries.s3_call` does, so attempts and backoff are known."""
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


def split_uri(uri: str) -> tuple[str, str]:
    """'s3://b/k' -> ('s3', 'b/k'); '/x/y', 'x/y' or 'file:///x/y' -> ('file', '/x/y')."""
    protocol, path = fsspec.core.split_protocol(uri)
    if protocol in (None, "file", "local"):
        return "file", posixpath.abspath(path) if path.startswith("/") else os.path.abspath(path)
    return protocol, path


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


class _Objects:
    """What both backends derive from their own ``get_bytes``."""

    def get_if_exists(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none (one GET on S3)."""
        try:
            return self.get_bytes(path)
        except FileNotFoundError:
            return None


class LocalBackend(_Objects):
    """A local folder. Calls are retried on transient ``OSError`` (network file systems)."""

    is_local = True

    def __init__(self, root: str, *, policy: RetryPolicy | None = None):
        self.root = root.rstrip("/") or "/"
        self.endpoint = self.root
        self.policy = policy or RetryPolicy.from_settings()

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    def _io(self, fn: Callable[[], T], what: str, path: str | None = None) -> T:
        return with_retries(fn, what=what, endpoint=self.endpoint, policy=self.policy, path=path)

    @staticmethod
    def _path(path: str) -> str:
        return split_uri(path)[1] if path.startswith("file:") else path

    def uri(self, path: str) -> str:
        return self._path(path)

    # -- objects ---------------------------------------------------------------------------
    def get_bytes(self, path: str) -> bytes:
        path = self._path(path)

        def read() -> bytes:
            with open(path, "rb") as f:
                return f.read()

        return self._io(read, what=f"reading {path}")

    def put_bytes(self, path: str, data: bytes) -> None:
        path = self._path(path)
        tmp = join_uri(self.root, "_tmp", uuid.uuid4().hex)

        def write() -> None:
            os.makedirs(posixpath.dirname(tmp), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            os.replace(tmp, path)

        try:
            self._io(write, what=f"writing {path}", path=path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def exists(self, path: str) -> bool:
        path = self._path(path)
        return self._io(lambda: os.path.isfile(path), what=f"checking {path}")

    def remove(self, paths: str | Iterable[str]) -> None:
        for path in [paths] if isinstance(paths, str) else list(paths):
            path = self._path(path)

            def rm(path=path) -> None:
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)

            self._io(rm, what=f"removing {path}")

    def move(self, path: str, dest: str) -> None:
        """Move the file at ``path`` to ``dest`` (a rename: same file system)."""
        path, dest = self._path(path), self._path(dest)

        def mv() -> None:
            os.makedirs(posixpath.dirname(dest), exist_ok=True)
            os.replace(path, dest)

        self._io(mv, what=f"moving {path} to {dest}", path=dest)

    def remove_dir(self, d: str) -> None:
        d = self._path(d)

        def rm() -> None:
            if os.path.isdir(d) and not os.path.islink(d):
                shutil.rmtree(d)

        self._io(rm, what=f"removing {d}")

    # -- listings --------------------------------------------------------------------------
    def listing(self, d: str) -> list[tuple[str, int]]:
        """Every non-folder below ``d`` with its size, sorted by path; follows folder links
        (as fsspec's ``find`` does)."""
        d = self._path(d).rstrip("/") or "/"

        def walk() -> list[tuple[str, int]]:
            out = []
            for dirpath, _, filenames in os.walk(d, followlinks=True):
                for name in filenames:
                    full = posixpath.join(dirpath.replace(os.sep, "/"), name)
                    try:
                        size = os.stat(full).st_size
                    except FileNotFoundError:  # a dangling link, or removed while we looked
                        try:
                            size = os.lstat(full).st_size
                        except FileNotFoundError:
                            continue
                    out.append((full, size))
            return sorted(out)

        return self._io(walk, what=f"listing {d}")

    def files_under(self, d: str) -> list[str]:
        return [p for p, _ in self.listing(d)]

    def list_names(self, d: str) -> list[str]:
        d = self._path(d)

        def names() -> list[str]:
            try:
                return sorted(os.listdir(d))
            except (FileNotFoundError, NotADirectoryError):
                return []

        return self._io(names, what=f"listing {d}")

    def check_reachable(self) -> None:
        self._io(lambda: os.makedirs(self.root, exist_ok=True), what=f"opening {self.root}")


class S3Backend(_Objects):
    """An S3 bucket (any S3-compatible endpoint), spoken to through botocore."""

    is_local = False

    def __init__(self, root: str, s3: S3Options, *, policy: RetryPolicy | None = None):
        self.root = root.rstrip("/")
        self.s3 = s3
        self.endpoint = s3.endpoint_url or "AWS S3"
        self.policy = policy or RetryPolicy.from_settings()
        self._split(self.root)  # an invalid root fails here, before any request

    def __repr__(self) -> str:
        return f"S3Backend({self.root!r}, endpoint={self.endpoint!r})"

    @property
    def client(self):
        return s3_client(self.s3)

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        """'bucket/key' or 's3://bucket/key' -> ('bucket', 'key'). A key with a ``.`` or
        ``..`` segment or a NUL is an :class:`InvalidKey` (S3 stores such keys literally;
        anything that normalises paths would read another object): never sent, never retried."""
        for scheme in ("s3://", "s3a://"):
            if path.startswith(scheme):
                path = path[len(scheme) :]
                break
        bucket, _, key = path.partition("/")
        if not bucket:
            raise InvalidKey(f"invalid S3 path {path!r}: no bucket")
        if "\x00" in key or any(part in (".", "..") for part in key.split("/")):
            raise InvalidKey(
                f"invalid S3 key {key!r} in bucket {bucket!r}: '.' and '..' segments (and NUL) are not allowed"
            )
        return bucket, key

    def _call(self, fn: Callable[[], T], what: str, bucket: str) -> T:
        return s3_call(fn, what=what, endpoint=self.endpoint, bucket=bucket, policy=self.policy)

    def uri(self, path: str) -> str:
        return path if path.startswith(("s3://", "s3a://")) else f"s3://{path}"

    # -- objects ---------------------------------------------------------------------------
    def get_bytes(self, path: str) -> bytes:
        bucket, key = self._split(path)
        return self._call(
            lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read(), f"reading {path}", bucket
        )

    def put_bytes(self, path: str, data: bytes) -> None:
        bucket, key = self._split(path)
        self._call(lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data), f"writing {path}", bucket)

    def exists(self, path: str) -> bool:
        bucket, key = self._split(path)
        try:
            self._call(lambda: self.client.head_object(Bucket=bucket, Key=key), f"checking {path}", bucket)
        except FileNotFoundError:
            return False
        return True

    def remove(self, paths: str | Iterable[str]) -> None:
        if isinstance(paths, str):
            bucket, key = self._split(paths)
            self._call(lambda: self.client.delete_object(Bucket=bucket, Key=key), f"removing {paths}", bucket)
            return
        by_bucket: dict[str, list[str]] = {}
        for path in paths:
            bucket, key = self._split(path)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for i in range(0, len(keys), DELETE_BATCH):
                chunk = [{"Key": k} for k in keys[i : i + DELETE_BATCH]]
                what = f"removing {len(chunk)} objects from s3://{bucket}"
                out = self._call(
                    lambda bucket=bucket, chunk=chunk: self.client.delete_objects(
                        Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}
                    ),
                    what,
                    bucket,
                )
                if errors := out.get("Errors"):
                    e = errors[0]
                    raise StorageUnavailable(
                        f"{what}: {len(errors)} not removed, e.g. {e.get('Key')!r} "
                        f"({e.get('Code')}: {e.get('Message')}) at {self.endpoint}"
                    )

    def move(self, path: str, dest: str) -> None:
        """Copy ``path`` to ``dest``, then delete ``path`` (S3 has no rename)."""
        bucket, key = self._split(path)
        dest_bucket, dest_key = self._split(dest)
        self._call(
            lambda: self.client.copy_object(
                Bucket=dest_bucket, Key=dest_key, CopySource={"Bucket": bucket, "Key": key}
            ),
            f"copying {path} to {dest}",
            bucket,
        )
        self.remove(path)

    def remove_dir(self, d: str) -> None:
        if paths := self.files_under(d):
            self.remove(paths)

    # -- listings --------------------------------------------------------------------------
    def _pages(self, d: str, what: str, **kwargs):
        bucket, key = self._split(d)
        prefix = key.strip("/") + "/" if key.strip("/") else ""

        def pages() -> list[dict]:
            paginator = self.client.get_paginator("list_objects_v2")
            return list(paginator.paginate(Bucket=bucket, Prefix=prefix, **kwargs))

        return bucket, prefix, self._call(pages, f"{what} s3://{bucket}/{prefix}", bucket)

    def listing(self, d: str) -> list[tuple[str, int]]:
        """Every object below ``d`` with its size, in the store's listing order (folder
        placeholders ``d/x/`` included)."""
        bucket, _, pages = self._pages(d, "listing")
        return [(f"{bucket}/{o['Key']}", int(o.get("Size") or 0)) for page in pages for o in page.get("Contents", [])]

    def files_under(self, d: str) -> list[str]:
        return [p for p, _ in self.listing(d)]

    def list_names(self, d: str) -> list[str]:
        _, prefix, pages = self._pages(d, "listing", Delimiter="/")
        names = set()
        for page in pages:
            names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        names.discard("")  # "d/" itself: a folder placeholder some tools create
        return sorted(names)

    def check_reachable(self) -> None:
        """One listing of the root: fails on a missing bucket, bad credentials or no endpoint."""
        bucket, key = self._split(self.root)
        prefix = key.strip("/") + "/" if key.strip("/") else ""
        self._call(
            lambda: self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1),
            f"opening s3://{bucket}/{prefix}",
            bucket,
        )


Backend = LocalBackend | S3Backend


def open_backend(uri: str, s3: S3Options | None = None) -> Backend:
    """The backend for ``uri``: a local path (or ``file://``) or ``s3://bucket/prefix``."""
    protocol, path = split_uri(uri)
    if protocol == "file":
        return LocalBackend(path)
    if protocol in ("s3", "s3a"):
        if not path.split("/", 1)[0]:
            raise InvalidKey(f"{uri!r} names no bucket")
        return S3Backend(path, s3 or S3Options())
    raise InvalidKey(f"{uri!r}: only local paths and s3:// are supported")

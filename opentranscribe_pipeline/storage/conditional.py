"""Conditional writes: compare-and-swap on one object, for state that several machines share.

``write_if(wh, path, data, expect=None)`` creates the object only if it does not exist;
``expect=<version>`` replaces it only if it is still the version read earlier. On S3 these
are ``PutObject`` with ``If-None-Match: *`` / ``If-Match: <ETag>`` (AWS since 2024, MinIO,
SeaweedFS): the server decides, so two machines can never both win. Locally the check and
the atomic rename happen under an exclusive ``flock`` on a sidecar lock file, which serves
every process on the machine (not network file systems without lock support).

``create_if_absent(wh, path, data)`` is the create-only case for objects that are written once
and never replaced (batch manifests, drop ownership records): on S3 the same ``If-None-Match:
*`` PUT; locally a temporary file hard-linked into place (``link`` fails if the name exists),
so no lock file is left beside the object. An object is written through one of the two
functions, never both.

A server that ignores the condition headers would make every write succeed: :func:`probe`
tells, and callers that depend on the guard check it once per store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from .warehouse import Warehouse

PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class PreconditionFailed(RuntimeError):
    """The object changed (or appeared) since it was read: someone else wrote it."""


@dataclass(frozen=True)
class Versioned:
    data: bytes
    version: str  # S3 ETag; locally a content hash


def _local_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@contextlib.contextmanager
def _local_lock(path: str) -> Iterator[None]:
    lock_path = path + ".lock"
    os.makedirs(posixpath.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_versioned(wh: Warehouse, path: str) -> Versioned | None:
    """The object and its version, or None when there is none (one GET on S3)."""
    if wh.is_local:
        data = wh.get_if_exists(path)
        return None if data is None else Versioned(data, _local_version(data))
    backend = wh.backend
    bucket, key = backend._split(path)

    def get():
        response = backend.client.get_object(Bucket=bucket, Key=key)
        return Versioned(response["Body"].read(), response["ETag"])

    try:
        return backend._call(get, f"reading {path}", bucket)
    except FileNotFoundError:
        return None


def write_if(wh: Warehouse, path: str, data: bytes, *, expect: str | None) -> str:
    """Write ``data`` if the object is absent (``expect=None``) or still at version
    ``expect``; return the new version. Raises :class:`PreconditionFailed` otherwise."""
    if wh.is_local:
        with _local_lock(path):
            current = wh.get_if_exists(path)
            found = None if current is None else _local_version(current)
            if found != expect:
                raise PreconditionFailed(f"{path} is at version {found}, expected {expect}")
            wh.put_bytes(path, data)
        return _local_version(data)
    backend = wh.backend
    bucket, key = backend._split(path)
    condition = {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}

    def put():
        from botocore.exceptions import ClientError

        try:
            return backend.client.put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code") or "")
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
            if code in PRECONDITION_CODES or status == "412":
                return None  # not an error to retry: the answer
            raise

    etag = backend._call(put, f"writing {path}", bucket)
    if etag is None:
        # an attempt that timed out may have written our bytes: then the write is ours
        stored = read_versioned(wh, path)
        if stored is not None and stored.data == data:
            return stored.version
        raise PreconditionFailed(f"{path} changed since version {expect}" if expect else f"{path} exists")
    return etag


def create_if_absent(wh: Warehouse, path: str, data: bytes) -> bool:
    """Create the object at ``path`` with ``data`` unless one exists; True when this call
    created it, False when it was there already (whoever wrote it). Atomic on both backends:
    of two concurrent callers exactly one gets True."""
    if not wh.is_local:
        try:
            write_if(wh, path, data, expect=None)
        except PreconditionFailed:
            return False
        return True
    backend = wh.backend
    target = backend._path(path)
    tmp = posixpath.join(backend.root, "_tmp", uuid.uuid4().hex)

    def create() -> bool:
        os.makedirs(posixpath.dirname(tmp), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        try:
            os.link(tmp, target)  # atomic, and refuses an existing name
        except FileExistsError:
            return False
        return True

    try:
        return backend._io(create, what=f"writing {target}", path=target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def probe(wh: Warehouse, path: str) -> bool:
    """Whether the store refuses a second create of one object (conditional writes work).
    Writes and removes ``path``."""
    wh.remove(path)
    write_if(wh, path, b"first", expect=None)
    try:
        write_if(wh, path, b"second", expect=None)
    except PreconditionFailed:
        return True
    finally:
        wh.remove(path)
    return False

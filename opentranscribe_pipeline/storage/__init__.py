"""Storage: the warehouse (every path, every Parquet read and write), its two backends (a local
folder, an S3 bucket) behind one interface, the sources audio is read from, and the retries
all of them share.

- :mod:`.retries`: the errors (:class:`StorageError`, :class:`StorageUnavailable` and its kinds,
  :class:`CorruptTable`), :class:`RetryPolicy`, :func:`with_retries`, :func:`s3_call`, which
  errors are transient; the only retry loop;
- :mod:`.backends`: :class:`S3Options`, :func:`s3_client`, :class:`LocalBackend`,
  :class:`S3Backend` (:func:`open_backend`);
- :mod:`.warehouse`: :class:`Warehouse`, the table layout, staging, the Parquet serialiser;
- :mod:`.media_index`: which batch first holds each ``media_id`` (one GET per lookup);
- :mod:`.sources`: listing and streaming source objects; the drop sensor's sources.
"""

from .backends import LocalBackend, S3Backend, S3Options, join_uri, open_backend, s3_client, split_uri
from .retries import (
    AccessDenied,
    CorruptTable,
    DiskFull,
    InvalidKey,
    NoSuchBucket,
    NotADirectory,
    RetryPolicy,
    StorageError,
    StorageUnavailable,
    StorageUnreachable,
    describe_s3_error,
    is_transient,
    s3_call,
    with_retries,
)
from .sources import SourceObject, filesystem, is_local, iter_chunks, list_source
from .warehouse import Quarantined, Warehouse

__all__ = [
    "AccessDenied",
    "CorruptTable",
    "DiskFull",
    "InvalidKey",
    "LocalBackend",
    "NoSuchBucket",
    "NotADirectory",
    "Quarantined",
    "RetryPolicy",
    "S3Backend",
    "S3Options",
    "SourceObject",
    "StorageError",
    "StorageUnavailable",
    "StorageUnreachable",
    "Warehouse",
    "describe_s3_error",
    "filesystem",
    "is_local",
    "is_transient",
    "iter_chunks",
    "join_uri",
    "list_source",
    "open_backend",
    "s3_call",
    "s3_client",
    "split_uri",
    "with_retries",
]

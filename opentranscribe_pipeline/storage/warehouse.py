"""The warehouse: every path of the archive and every Parquet read and write, over one backend
(a local directory or any ``s3://`` endpoint, see :mod:`.backends`).

:class:`Warehouse` owns the table layout (``<root>/<table>/batch_id=<id>/part-0.parquet``)
and the write discipline that makes a killed run harmless:

- every object is written atomically (one S3 PUT; locally ``<root>/_tmp/<uuid>`` renamed
  into place), so a reader sees the old table or the new one, never half a file;
- per-file results of a running batch go to ``<root>/_staging/<table>/batch_id=<id>/`` and
  are folded into the visible table when the batch step ends. A run killed midway leaves
  the visible table as it was, and the next run picks the staged files up instead of
  recomputing them.

Parquet is serialised here and nowhere else (:meth:`Warehouse.write_parquet`,
:meth:`Warehouse.read_parquet`); retries live in the backend, so callers never add their own.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable

import polars as pl

from .backends import S3Options, join_uri, open_backend
from .retries import StorageUnavailable

PARQUET_OPTIONS = {"compression": "zstd", "statistics": True}


def to_parquet(df: pl.DataFrame) -> bytes:
    """``df`` as Parquet bytes, the one format every table of the archive is written in."""
    buf = io.BytesIO()
    df.write_parquet(buf, **PARQUET_OPTIONS)
    return buf.getvalue()


def from_parquet(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))


class Warehouse:
    """Tables and audio objects under one root (local path or s3://bucket/prefix).

    Paths handed out and taken back are the backend's (an absolute local path, or
    ``bucket/key``); :meth:`uri` turns one into what the tables record."""

    def __init__(self, root: str, s3: S3Options | None = None):
        self.root_uri = root.rstrip("/")
        self.s3 = s3 or S3Options()
        self.backend = open_backend(self.root_uri, self.s3)
        self.root = self.backend.root
        self.is_local = self.backend.is_local
        self.endpoint = self.backend.endpoint

    def __repr__(self) -> str:
        return f"Warehouse({self.root_uri!r})"

    # -- paths -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return join_uri(self.root, *parts)

    def uri(self, path: str) -> str:
        return self.backend.uri(path)

    def table_dir(self, table: str, batch_id: str | None = None) -> str:
        return self.path(table, f"batch_id={batch_id}") if batch_id else self.path(table)

    def table_file(self, table: str, batch_id: str | None = None) -> str:
        return join_uri(self.table_dir(table, batch_id), "part-0.parquet")

    def staging_dir(self, table: str, batch_id: str) -> str:
        return self.path("_staging", table, f"batch_id={batch_id}")

    def audio_path(self, media_id: str) -> str:
        return self.path("audio_16k", media_id[:2], f"{media_id}.flac")

    # -- objects ---------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """Fail fast, with the endpoint in the message, if the root cannot be used."""
        try:
            self.backend.check_reachable()
        except StorageUnavailable:
            raise
        except Exception as exc:
            raise StorageUnavailable(f"opening warehouse {self.root_uri} at {self.endpoint}: {exc}") from None

    def exists(self, path: str) -> bool:
        """Whether an object (a file) is stored at ``path`` (S3: one HEAD)."""
        return self.backend.exists(path)

    def put_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically: on S3 one PUT (an object appears whole or
        not at all); locally a temporary file under ``<root>/_tmp/`` renamed into place."""
        self.backend.put_bytes(path, data)

    def get_bytes(self, path: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none (S3: one GET)."""
        return self.backend.get_bytes(path)

    def get_if_exists(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none: one GET on S3 (no HEAD first, no
        listing when the key is missing). Tables, staged rows, index entries, drop ledgers."""
        return self.backend.get_if_exists(path)

    def remove(self, path: str | Iterable[str], recursive: bool = False) -> None:
        """Delete the object at ``path`` (or each of several paths); a missing one is no
        error. ``recursive``: everything below the folder ``path`` too."""
        if recursive and isinstance(path, str):
            self.backend.remove_dir(path)
        self.backend.remove(path)

    def files_under(self, d: str) -> list[str]:
        """Every object below the folder ``d``; [] when there is none (S3: one listing
        request per 1,000 objects)."""
        return self.backend.files_under(d)

    def list_names(self, d: str) -> list[str]:
        """Names of the folder ``d``'s immediate children (files and folders), sorted; []
        when there is none (S3: one delimited listing per 1,000 names)."""
        return self.backend.list_names(d)

    # -- Parquet: the one serialiser -------------------------------------------------------
    def write_parquet(self, path: str, df: pl.DataFrame) -> str:
        """Write ``df`` as one Parquet object at ``path``, atomically; returns ``path``."""
        self.put_bytes(path, to_parquet(df))
        return path

    def read_parquet(self, path: str) -> pl.DataFrame | None:
        """The Parquet object at ``path``, or None when there is none (S3: one GET)."""
        data = self.get_if_exists(path)
        return None if data is None else from_parquet(data)

    # -- tables ----------------------------------------------------------------------------
    def write_table(self, table: str, df: pl.DataFrame, batch_id: str | None = None) -> str:
        """Replace the table (or one batch of it) with ``df``; returns the file's path."""
        return self.write_parquet(self.table_file(table, batch_id), df)

    def read_table(self, table: str, batch_id: str | None = None) -> pl.DataFrame | None:
        """The table (or one batch of it), or None when it was never written."""
        return self.read_parquet(self.table_file(table, batch_id))

    def batch_ids(self, table: str, prefix: str = "") -> list[str]:
        """Batches of ``table`` whose id starts with ``prefix``, sorted (one listing)."""
        key = "batch_id="
        names = self.list_names(self.path(table))
        return sorted(n[len(key) :] for n in names if n.startswith(key) and n[len(key) :].startswith(prefix))

    def scan(self, table: str) -> pl.DataFrame | None:
        """The whole table across batches (small tables and tests; analysts use scan_parquet)."""
        frames = [f for b in self.batch_ids(table) if (f := self.read_table(table, b)) is not None]
        return pl.concat(frames, how="vertical_relaxed") if frames else None

    # -- staging ---------------------------------------------------------------------------
    def staging_file(self, table: str, batch_id: str, key: str) -> str:
        return join_uri(self.staging_dir(table, batch_id), f"{key}.parquet")

    def stage(self, table: str, batch_id: str, key: str, df: pl.DataFrame) -> None:
        """Stage one file's rows of a running batch (folded into the table at the end)."""
        self.write_parquet(self.staging_file(table, batch_id, key), df)

    def unstage(self, table: str, batch_id: str, key: str) -> None:
        """Remove one staged file (absent: nothing to do)."""
        self.remove(self.staging_file(table, batch_id, key))

    def staged(self, table: str, batch_id: str) -> dict[str, pl.DataFrame]:
        """Results staged by an earlier, unfinished run of this batch: key -> rows."""
        out = {}
        for p in self.files_under(self.staging_dir(table, batch_id)):
            if p.endswith(".parquet") and (df := self.read_parquet(p)) is not None:
                out[posixpath.basename(p)[: -len(".parquet")]] = df
        return out

    def clear_staging(self, table: str, batch_id: str) -> None:
        """Delete the staged files (one listing when there are none)."""
        self.backend.remove_dir(self.staging_dir(table, batch_id))

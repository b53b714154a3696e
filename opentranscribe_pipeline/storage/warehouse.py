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

A part that exists but cannot be decoded is a :class:`~.retries.CorruptTable` naming the
table, the batch and the path. The step that writes a batch's tables calls
:meth:`Warehouse.quarantine_corrupt` first: a bad part is moved to
``<root>/_quarantine/<table>/batch_id=<id>/<timestamp>.parquet`` (with a ``.json`` note
beside it), logged, reported to the Dagster run as an observation of the asset, and the step
rebuilds the table from what the batch can redo. A corrupt staged file is quarantined with
every staged file of the same key (the item is redone).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from .backends import S3Options, join_uri, open_backend
from .retries import CorruptTable, StorageUnavailable

log = logging.getLogger(__name__)
QUARANTINE = "_quarantine"
STAGING = "_staging"

PARQUET_OPTIONS = {"compression": "zstd", "statistics": True}


def to_parquet(df: pl.DataFrame) -> bytes:
    """``df`` as Parquet bytes, the one format every table of the archive is written in."""
    buf = io.BytesIO()
    df.write_parquet(buf, **PARQUET_OPTIONS)
    return buf.getvalue()


def from_parquet(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))


@dataclass(frozen=True)
class Quarantined:
    """A part moved aside: where it was, where it is now, and why."""

    table: str | None
    batch_id: str | None
    path: str  # where it was
    moved_to: str
    reason: str  # the read error, or why a readable part was set aside

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "batch_id": self.batch_id,
            "path": self.path,
            "moved_to": self.moved_to,
            "reason": self.reason,
        }


# told of each quarantine (what was moved, the message): the Dagster layer's reports it to the
# step running (resources/storage.py); this package knows no Dagster
QuarantineReport = Callable[[Quarantined, str], None]


class Warehouse:
    """Tables and audio objects under one root (local path or s3://bucket/prefix).

    Paths handed out and taken back are the backend's (an absolute local path, or
    ``bucket/key``); :meth:`uri` turns one into what the tables record."""

    def __init__(self, root: str, s3: S3Options | None = None, on_quarantine: QuarantineReport | None = None):
        self.root_uri = root.rstrip("/")
        self.on_quarantine = on_quarantine
        self.s3 = s3 or S3Options()
        self.backend = open_backend(self.root_uri, self.s3)
        self.root = self.backend.root
        self.is_local = self.backend.is_local
        self.endpoint = self.backend.endpoint
        self.quarantined: list[Quarantined] = []  # what this object moved aside, in order

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

    def export_dir(self, fmt: str, batch_id: str) -> str:
        """``<root>/exports/<format>/batch_id=<id>/``: one batch's subtitle/transcript files."""
        return self.path("exports", fmt, f"batch_id={batch_id}")

    def export_path(self, fmt: str, batch_id: str, media_id: str) -> str:
        """``<root>/exports/<format>/batch_id=<id>/<media_id>.<format>``."""
        return join_uri(self.export_dir(fmt, batch_id), f"{media_id}.{fmt}")

    def audio_path(self, media_id: str) -> str:
        return self.path("audio_16k", media_id[:2], f"{media_id}.flac")

    def locate(self, path: str) -> tuple[str | None, str | None]:
        """(table, batch_id) of a part below the root (either may be None): the names a
        :class:`CorruptTable` and the quarantine use. Staged files name their table too."""
        root = self.root.rstrip("/") + "/"
        stripped = path.removeprefix("s3://").removeprefix("s3a://") if not self.is_local else path
        if not stripped.startswith(root):
            return None, None
        parts = stripped[len(root) :].split("/")
        if parts and parts[0] == STAGING:
            parts = parts[1:]
        table = parts[0] if len(parts) > 1 else None
        batch = next((p[len("batch_id=") :] for p in parts[1:-1] if p.startswith("batch_id=")), None)
        return table, batch

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
        """The Parquet object at ``path``, or None when there is none (S3: one GET). A part
        that cannot be decoded is a :class:`CorruptTable` naming table, batch and path."""
        data = self.get_if_exists(path)
        if data is None:
            return None
        try:
            return from_parquet(data)
        except Exception as exc:  # polars/pyarrow say "File out of specification", no path
            table, batch_id = self.locate(path)
            what = f"table {table!r}" if table else "Parquet object"
            if batch_id:
                what += f" batch {batch_id!r}"
            raise CorruptTable(
                f"{what}: cannot read {self.uri(path)} ({len(data)} bytes): {type(exc).__name__}: {exc}",
                table=table,
                batch_id=batch_id,
                path=path,
            ) from None

    # -- tables ----------------------------------------------------------------------------
    def write_table(self, table: str, df: pl.DataFrame, batch_id: str | None = None) -> str:
        """Replace the table (or one batch of it) with ``df``; returns the file's path."""
        return self.write_parquet(self.table_file(table, batch_id), df)

    def read_table(
        self, table: str, batch_id: str | None = None, *, quarantine_corrupt: bool = False
    ) -> pl.DataFrame | None:
        """The table (or one batch of it), or None when it was never written. A part that
        cannot be read raises :class:`CorruptTable`; with ``quarantine_corrupt`` it is moved
        aside (:meth:`quarantine`) and None is returned: only for the step that rebuilds it."""
        try:
            return self.read_parquet(self.table_file(table, batch_id))
        except CorruptTable as exc:
            if not quarantine_corrupt:
                raise
            self.quarantine(exc.path, str(exc))
            return None

    # -- quarantine ------------------------------------------------------------------------
    def quarantine_path(self, table: str | None, batch_id: str | None, stamp: str, staged: bool = False) -> str:
        parts = [QUARANTINE] + ([STAGING] if staged else []) + [table or "_other"]
        if batch_id:
            parts.append(f"batch_id={batch_id}")
        return self.path(*parts, f"{stamp}.parquet")

    def quarantine(self, path: str, reason: str) -> Quarantined:
        """Move the part at ``path`` to ``<root>/_quarantine/<table>/batch_id=<id>/<UTC
        timestamp>.parquet`` with a JSON note beside it (``reason``, where it was), log it,
        and report it through ``on_quarantine`` (the warehouse resource's: the step's log and
        an asset observation). Returns what was moved."""
        table, batch_id = self.locate(path)
        staged = path.startswith(self.path(STAGING) + "/")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        if staged:  # several staged files of one item go aside together: keep their names
            stamp += "-" + posixpath.basename(path).removesuffix(".parquet")
        dest = self.quarantine_path(table, batch_id, stamp, staged)
        self.backend.move(path, dest)
        q = Quarantined(table, batch_id, self.uri(path), self.uri(dest), reason)
        self.put_bytes(dest.removesuffix(".parquet") + ".json", json.dumps(q.as_dict(), indent=1).encode())
        self.quarantined.append(q)
        message = f"quarantined {q.path} -> {q.moved_to}: {reason}"
        log.warning(message)
        if self.on_quarantine is not None:
            try:
                self.on_quarantine(q, message)
            except Exception as exc:  # reporting must never fail the repair
                log.warning("could not report the quarantine of %s: %s", q.path, exc)
        return q

    def quarantine_corrupt(self, batch_id: str, tables: Sequence[str]) -> list[Quarantined]:
        """Before a step rebuilds the batch's ``tables``: move aside each part that cannot be
        read. ``tables[0]`` is the table that vouches for the others (the state table of a
        model step, ``media`` for ingest): when another part was bad, it is moved aside too,
        so the step redoes the files whose rows were lost instead of trusting its rows.
        Reads each part once (only the parts that exist). Returns what was moved."""
        moved: list[Quarantined] = []
        for table in tables:
            try:
                self.read_table(table, batch_id)
            except CorruptTable as exc:
                moved.append(self.quarantine(exc.path, str(exc)))
        if moved and tables and all(q.table != tables[0] for q in moved):
            vouching = self.table_file(tables[0], batch_id)
            if self.exists(vouching):
                bad = ", ".join(q.table or "?" for q in moved)
                moved.append(self.quarantine(vouching, f"set aside: it vouches for rows lost with {bad}; files redone"))
        return moved

    def batch_ids(self, table: str, prefix: str = "") -> list[str]:
        """Batches of ``table`` whose id starts with ``prefix``, sorted (one listing)."""
        key = "batch_id="
        names = self.list_names(self.path(table))
        return sorted(n[len(key) :] for n in names if n.startswith(key) and n[len(key) :].startswith(prefix))

    def scan(self, table: str, corrupt: list[CorruptTable] | None = None) -> pl.DataFrame | None:
        """The whole table across batches (small tables and tests; analysts use scan_parquet).
        A part that cannot be read raises :class:`CorruptTable`, or, when a ``corrupt`` list
        is given, is appended to it and skipped (readers that show what they can)."""
        frames = []
        for b in self.batch_ids(table):
            try:
                f = self.read_table(table, b)
            except CorruptTable as exc:
                if corrupt is None:
                    raise
                corrupt.append(exc)
                continue
            if f is not None:
                frames.append(f)
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
        """Results staged by an earlier, unfinished run of this batch: key -> rows. A staged
        file that cannot be read is quarantined with every staged file of the same key in
        the batch's other tables, so the item is redone, never half-trusted."""
        out = {}
        for p in self.files_under(self.staging_dir(table, batch_id)):
            if not p.endswith(".parquet"):
                continue
            key = posixpath.basename(p)[: -len(".parquet")]
            try:
                df = self.read_parquet(p)
            except CorruptTable as exc:
                self._quarantine_staged_key(batch_id, key, p, str(exc))
                continue
            if df is not None:
                out[key] = df
        return out

    def _quarantine_staged_key(self, batch_id: str, key: str, bad: str, reason: str) -> None:
        self.quarantine(bad, reason)
        for other in self.list_names(self.path(STAGING)):
            path = self.staging_file(other, batch_id, key)
            if path != bad and self.exists(path):
                self.quarantine(path, f"set aside with the unreadable staged file {self.uri(bad)}")

    def clear_staging(self, table: str, batch_id: str) -> None:
        """Delete the staged files (one listing when there are none)."""
        self.backend.remove_dir(self.staging_dir(table, batch_id))

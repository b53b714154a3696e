"""Which Parquet files hold a table, and the one way the query layer opens them.

Every lookup first finds *where* the answer is, then hands polars only those files through
:func:`scan` (S3 options set in one place). :func:`counts` reads only the files' footers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from ..schemas import TABLES, polars_schema
from ..speakers import state as speaker_state
from ..storage import Warehouse

log = logging.getLogger(__name__)

PART = "part-0.parquet"
ARCHIVE_TABLES = speaker_state.ARCHIVE_TABLES


def storage_options(wh: Warehouse) -> dict | None:
    """What ``pl.scan_parquet`` needs to read this warehouse (None for a local one)."""
    if wh.is_local:
        return None
    s3 = wh.s3
    opts: dict[str, str] = {}
    if s3.endpoint_url:
        opts["aws_endpoint_url"] = s3.endpoint_url
        if s3.endpoint_url.startswith("http://"):
            opts["aws_allow_http"] = "true"
    if s3.access_key_id:
        opts["aws_access_key_id"] = s3.access_key_id
        opts["aws_secret_access_key"] = s3.secret_access_key or ""
    opts["aws_region"] = s3.region or "us-east-1"
    return opts


def scan(wh: Warehouse, paths: Sequence[str], table: str | None = None) -> pl.LazyFrame:
    """A LazyFrame over exactly these Parquet files (warehouse paths), nothing else. With
    ``table``: its contract's columns (a column an older file lacks is null, extra ones are
    dropped); an empty ``paths`` gives an empty frame of that schema."""
    schema = polars_schema(TABLES[table]) if table in TABLES else None
    if not paths:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(
        [wh.uri(p) for p in paths],
        hive_partitioning=False,  # every file carries batch_id as a column
        storage_options=storage_options(wh),
        schema=schema,
        missing_columns="insert" if schema is not None else "raise",
        extra_columns="ignore" if schema is not None else "raise",
    )


def table_files(wh: Warehouse, table: str, batch_ids: Iterable[str] | None = None) -> list[str]:
    """The visible parts of a per-batch table: of every batch (one recursive listing), or of
    the named batches that have one (one listing of the table's folder)."""
    if batch_ids is None:
        return sorted(
            p
            for p in wh.files_under(wh.table_dir(table))
            if p.endswith("/" + PART) and p.rsplit("/", 2)[-2].startswith("batch_id=")
        )
    present = set(wh.batch_ids(table))
    paths = [wh.table_file(table, b) for b in sorted(set(batch_ids)) if b in present]
    return [p for p in paths if os.path.isfile(p)] if wh.is_local else paths


def archive_files(wh: Warehouse, table: str, gen: speaker_state.Generation | None = None) -> list[str]:
    """The files of an archive-wide speaker table in the committed generation (``gen``,
    when the caller has read it already)."""
    gen = gen or speaker_state.SpeakerState(wh).current()
    if table == speaker_state.CLUSTERS:
        rel = ([gen.base] if gen.base else []) + sorted(gen.clusters.values())
    else:
        rel = [gen.tables[table]] if gen.tables.get(table) else []
    paths = [wh.path(r) for r in rel]
    return [p for p in paths if os.path.isfile(p)] if wh.is_local else paths


def table(wh: Warehouse, name: str) -> pl.LazyFrame:
    """Any table of the contract as one LazyFrame (whole table: for your own questions).
    Archive-wide speaker tables are the committed generation's files."""
    files = archive_files(wh, name) if name in ARCHIVE_TABLES else table_files(wh, name)
    return scan(wh, files, name)


# -- counts ----------------------------------------------------------------------------------------
def _footer(wh: Warehouse, path: str, fs) -> tuple[int, int]:
    """(rows, bytes) of one Parquet file from its footer alone."""
    import pyarrow.parquet as pq

    if wh.is_local:
        return pq.ParquetFile(path).metadata.num_rows, os.stat(path).st_size
    with fs.open_input_file(wh.uri(path).removeprefix("s3://")) as f:  # ranged reads: the footer only
        return pq.ParquetFile(f).metadata.num_rows, f.size()


def _s3_filesystem(wh: Warehouse):
    from pyarrow import fs

    s3 = wh.s3
    endpoint = s3.endpoint_url or ""
    return fs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key,
        endpoint_override=endpoint.split("://", 1)[-1] or None,
        scheme="http" if endpoint.startswith("http://") else "https",
        region=s3.region or "us-east-1",
        connect_timeout=5,
        request_timeout=20,
    )


def counts(
    wh: Warehouse, tables: Iterable[str] | None = None, *, workers: int = 16, unreadable: list | None = None
) -> pl.DataFrame:
    """Rows per table from the Parquet footers (no table is loaded): table, files, rows,
    bytes, unreadable (parts whose footer could not be read; their rows are not counted).
    One listing per per-batch table (the manifest for the speaker tables), then one footer
    read per file, ``workers`` at a time (S3: ranged GETs of the footer)."""
    names = list(tables) if tables is not None else list(TABLES)
    gen = speaker_state.SpeakerState(wh).current() if set(names) & set(ARCHIVE_TABLES) else None  # one manifest read
    jobs = [
        (name, path)
        for name in names
        for path in (archive_files(wh, name, gen) if name in ARCHIVE_TABLES else table_files(wh, name))
    ]
    fs = None if wh.is_local else _s3_filesystem(wh)

    def read(job: tuple[str, str]) -> tuple[int, int] | None:
        try:
            return _footer(wh, job[1], fs)
        except Exception as exc:  # a part whose footer cannot be read
            log.warning("cannot read the Parquet footer of %s: %s", wh.uri(job[1]), exc)
            return None

    with ThreadPoolExecutor(max(1, min(workers, len(jobs) or 1))) as pool:
        found = list(pool.map(read, jobs))
    totals = {n: [0, 0, 0, 0] for n in names}  # files, rows, bytes, unreadable
    for (name, _), got in zip(jobs, found):
        t = totals[name]
        t[0] += 1
        if got is None:
            t[3] += 1
            if unreadable is not None:
                unreadable.append((name, _))
        else:
            t[1] += got[0]
            t[2] += got[1]
    return pl.DataFrame(
        [(n, *v) for n, v in totals.items()],
        schema={"table": pl.Utf8, "files": pl.Int64, "rows": pl.Int64, "bytes": pl.Int64, "unreadable": pl.Int64},
        orient="row",
    )

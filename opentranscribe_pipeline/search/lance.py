"""The embedded backend: LanceDB tables under ``<warehouse>/_search/`` (local or S3).

Two tables: ``chunks`` (one row per passage: the document columns and a ``vector``) with a
native full-text index on ``text`` (BM25, English stemming and stop words) and, once the
table is big enough to train one (``VECTOR_INDEX_MIN_ROWS``), an IVF-flat cosine index on
``vector``; below that LanceDB's exact (brute-force) search is fast enough. IVF-flat, not
HNSW or PQ, measured at 100,000 clustered 384-d vectors on 2 cores (``benchmarks/search_scale.py``,
section 2b): IVF-flat builds in 2.2 s, recall@10 1.000 at 23 ms a query; IVF-HNSW-SQ with
LanceDB's default partitions ran for more than 10 minutes, with 12 partitions 69 s (recall
0.970, 7 ms); IVF-PQ 92 s and recall 0.403 (the product quantiser loses too much). Rows
written since an index was built are searched too (LanceDB scans the unindexed part), and
``optimize()`` after each write folds them in. ``speakers`` holds one centroid per global
voice for ``speakers similar``.

Writes are idempotent: ``merge_insert`` on ``id`` (``<media_id>:<chunk_index>``), and a write
that would change nothing is not made: every Lance write (a merge, a delete, even one that
matches no row, an ``optimize``) commits a new version, and old versions keep their files, so
re-publishing an unchanged batch used to add three versions and a data file each time.
:meth:`LanceBackend.pending_changes` compares the batch's documents with what the index holds
(one filtered read, content hashes per row) and only new or changed rows are written, only
leftovers deleted. After a write, versions older than ``version_retention()``
(``OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S``, default one hour, so a query that opened an
older version just before keeps its files) are removed with their files.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from ..storage import S3Options
from .backends import Filters, Hit, SearchUnavailable

log = logging.getLogger(__name__)

CHUNKS = "chunks"
SPEAKERS = "speakers"
VECTOR_INDEX_MIN_ROWS = 100_000
# A k-NN query narrowed by a filter (a speaker, a drop, a language) to at most this many rows is
# answered exactly over those rows, not through the IVF index: the index probes the partitions
# nearest the query and stops once it has the limit, so out of a speaker's 200 passages among a
# million it returns the best of the few in those partitions (recall@10 0.32 measured at 1M,
# benchmarks/search_scale.py), while an exact pass over a few thousand rows is cheap.
EXACT_SEARCH_MAX_ROWS = 20_000
VECTOR_INDEX_PARTITION_ROWS = 2048  # IVF partition size (LanceDB's own default for IVF-flat)
_WORD = re.compile(r"\w+", re.UNICODE)
# versions of a table older than this are removed (with their files) after each write; the
# latest is always kept. A reader holds the version it opened for the length of one query.
VERSION_RETENTION_S = 3600.0


def version_retention() -> dt.timedelta:
    """How long a replaced table version stays readable (``OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S``)."""
    from .. import settings

    return dt.timedelta(seconds=settings.search_version_retention_s(VERSION_RETENTION_S))


def _row_hashes(df: pl.DataFrame) -> dict[str, int]:
    """id -> hash of the whole row (the frames compared are cast to one schema first)."""
    return dict(zip(df["id"].to_list(), df.hash_rows().to_list()))


def lance_storage_options(s3: S3Options | None, uri: str) -> dict[str, str] | None:
    """The warehouse's S3 settings as object_store options (LanceDB's S3 client)."""
    if not uri.startswith(("s3://", "s3a://")) or s3 is None:
        return None
    opts: dict[str, str] = {}
    if s3.endpoint_url:
        opts["aws_endpoint"] = s3.endpoint_url
        if s3.endpoint_url.startswith("http://"):
            opts["allow_http"] = "true"
    if s3.access_key_id:
        opts["aws_access_key_id"] = s3.access_key_id
    if s3.secret_access_key:
        opts["aws_secret_access_key"] = s3.secret_access_key
    opts["aws_region"] = s3.region or "us-east-1"
    return opts


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def where_clause(filters: Filters | None) -> str | None:
    if filters is None:
        return None
    parts = []
    if filters.model:
        parts.append(f"model = {_quote(filters.model)}")
    if filters.global_speaker_ids is not None:
        ids = ", ".join(_quote(i) for i in filters.global_speaker_ids) or "''"
        parts.append(f"global_speaker_id IN ({ids})")
    if filters.language:
        parts.append(f"language = {_quote(filters.language)}")
    if filters.drop:
        parts.append(f'"drop" = {_quote(filters.drop)}')
    if filters.batch_id:
        parts.append(f"batch_id = {_quote(filters.batch_id)}")
    return " AND ".join(parts) or None


def _chunk_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("media_id", pa.string()),
            ("chunk_index", pa.int32()),
            ("batch_id", pa.string()),
            ("drop", pa.string()),
            ("source_uri", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("speaker", pa.string()),
            ("global_speaker_id", pa.string()),
            ("language", pa.string()),
            ("text", pa.string()),
            ("model", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def _scalar_indexes():
    from lancedb.index import Bitmap, BTree

    # high-cardinality columns get a B-tree, the few-valued ones a bitmap (LanceDB's advice)
    return {
        "global_speaker_id": BTree,
        "batch_id": BTree,
        "media_id": BTree,
        "language": Bitmap,
        "drop": Bitmap,
        "model": Bitmap,
    }


class WriteConflict(RuntimeError):
    """Another writer replaced the table at the same moment (Lance's retryable commit conflict):
    the caller reads what to write again and retries."""


class LanceBackend:
    name = "lancedb"

    def __init__(self, uri: str, s3: S3Options | None = None):
        self.uri = uri.rstrip("/")
        self.storage_options = lance_storage_options(s3, self.uri)
        self._conn = None

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "index": f"{self.uri}/{CHUNKS}.lance",
            "speakers_index": f"{self.uri}/{SPEAKERS}.lance",
        }

    # -- connection ------------------------------------------------------------------------
    def _db(self):
        if self._conn is None:
            import lancedb

            try:
                self._conn = lancedb.connect(self.uri, storage_options=self.storage_options)
            except Exception as exc:
                raise SearchUnavailable(f"cannot open the LanceDB index at {self.uri}: {exc}") from None
        return self._conn

    def _table(self, name: str):
        db = self._db()
        try:
            if name not in db.list_tables().tables:
                return None
            return db.open_table(name)
        except Exception as exc:
            raise SearchUnavailable(f"cannot open LanceDB table {name!r} at {self.uri}: {exc}") from None

    def check(self) -> None:
        self._table(CHUNKS)

    # -- chunks ----------------------------------------------------------------------------
    def upsert_chunks(self, docs: pl.DataFrame) -> int:
        if docs.is_empty():
            return 0
        dim = docs.schema["vector"].size
        data = docs.select(_chunk_schema(dim).names).to_arrow().cast(_chunk_schema(dim))
        table = self._table(CHUNKS)
        if table is None:
            table = self._db().create_table(CHUNKS, schema=_chunk_schema(dim), exist_ok=True)
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        self._maintain(table)
        return docs.height

    def pending_changes(self, batch_id: str, docs: pl.DataFrame, kept: Mapping[str, int]) -> tuple[pl.DataFrame, int]:
        """What writing ``docs`` (the batch's documents) would change: the documents that are
        new or differ from the indexed ones (any column, the vector included), and how many
        indexed documents of the batch ``delete_leftovers`` would remove. One filtered read of
        the batch's rows (B-tree index on ``batch_id``)."""
        table = self._table(CHUNKS)
        if table is None:
            return docs, 0
        rows = table.search().where(f"batch_id = {_quote(batch_id)}").limit(None).to_arrow()
        if rows.num_rows == 0:
            return docs, 0
        schema = table.schema
        names = [f.name for f in schema]
        indexed = pl.from_arrow(rows.select(names).cast(pa.schema([schema.field(n) for n in names])))
        have = _row_hashes(indexed)
        changed = docs
        if docs.height:
            dim = docs.schema["vector"].size
            if _chunk_schema(dim) == pa.schema([schema.field(n) for n in names]):
                mine = pl.from_arrow(docs.select(names).to_arrow().cast(_chunk_schema(dim)))
                differs = [have.get(i) != h for i, h in _row_hashes(mine).items()]
                changed = docs.filter(pl.Series(differs, dtype=pl.Boolean))
        if not kept:
            return changed, indexed.height
        last = pl.col("media_id").replace_strict(dict(kept), default=0, return_dtype=pl.Int64)
        leftovers = indexed.filter(~pl.col("media_id").is_in(list(kept)) | (pl.col("chunk_index") >= last)).height
        return changed, leftovers

    def _maintain(self, table) -> None:
        """Full-text index once; a vector index once the table can train one; fold new rows in;
        versions past the retention removed."""
        from lancedb.index import FTS

        names = {i.name: i for i in table.list_indices()}
        if "text_idx" not in names:
            table.create_index("text", config=FTS(language="English", stem=True, remove_stop_words=True), replace=True)
        # scalar indexes on what queries filter by: without them a filter reads the column of
        # every row (a speaker-filtered k-NN query at 1M chunks: 991 ms p50, with them 53 ms;
        # benchmarks/search_scale.py)
        for column, config in _scalar_indexes().items():
            if f"{column}_idx" not in names:
                table.create_index(column, config=config(), replace=True)
        if "vector_idx" not in names and table.count_rows() >= VECTOR_INDEX_MIN_ROWS:
            from lancedb.index import IvfFlat

            table.create_index(
                "vector",
                config=IvfFlat(distance_type="cosine", target_partition_size=VECTOR_INDEX_PARTITION_ROWS),
                replace=True,
            )
        _cleanup(table)

    def delete_leftovers(self, batch_id: str, kept: Mapping[str, int]) -> int:
        """Delete the batch's documents that are no longer chunks: files without chunks now,
        and chunk numbers past a re-chunked file's last."""
        table = self._table(CHUNKS)
        if table is None:
            return 0
        stale = [f"media_id NOT IN ({', '.join(_quote(m) for m in kept) or _quote('')})"]
        stale += [f"(media_id = {_quote(m)} AND chunk_index >= {int(n)})" for m, n in kept.items()]
        where = f"batch_id = {_quote(batch_id)} AND ({' OR '.join(stale)})"
        if table.count_rows(where) == 0:
            return 0  # a delete that matches nothing still commits a version
        before = table.count_rows()
        table.delete(where)
        _cleanup(table)
        return before - table.count_rows()

    def count(self, filters: Filters | None = None) -> int:
        table = self._table(CHUNKS)
        if table is None:
            return 0
        return table.count_rows(where_clause(filters))

    def text_search(self, query: str, filters: Filters, limit: int) -> list[Hit]:
        table = self._table(CHUNKS)
        if table is None:
            return []
        terms = " ".join(_WORD.findall(query))  # the FTS parser reads operators; search words only
        if not terms:
            return []
        q = table.search(terms, query_type="fts")
        where = where_clause(filters)
        if where:
            q = q.where(where, prefilter=True)
        rows = q.limit(limit).to_list()
        return [Hit(r["id"], float(r["_score"]), _doc(r)) for r in rows]

    def vector_search(self, vector: Sequence[float], filters: Filters, limit: int) -> list[Hit]:
        table = self._table(CHUNKS)
        if table is None:
            return []
        q = table.search(np.asarray(vector, np.float32), vector_column_name="vector").distance_type("cosine")
        where = where_clause(filters)
        if where:
            q = q.where(where, prefilter=True)
            narrowed = where != where_clause(Filters(model=filters.model))
            indexed = narrowed and any(i.name == "vector_idx" for i in table.list_indices())
            if indexed and table.count_rows(where) <= EXACT_SEARCH_MAX_ROWS:
                q = q.bypass_vector_index()
        rows = q.limit(limit).to_list()
        return [Hit(r["id"], 1.0 - float(r["_distance"]), _doc(r)) for r in rows]

    # -- speakers --------------------------------------------------------------------------
    def replace_speakers(self, docs: pl.DataFrame) -> int:
        """The speakers table becomes ``docs`` (one row per active global voice)."""
        db = self._db()
        if docs.is_empty():
            if self._table(SPEAKERS) is not None:
                db.drop_table(SPEAKERS)
            return 0
        dim = len(docs["vector"][0])
        schema = pa.schema(
            [
                ("global_speaker_id", pa.string()),
                ("model", pa.string()),
                ("vector", pa.list_(pa.float32(), dim)),
                ("n_files", pa.int64()),
                ("speech_s", pa.float64()),
            ]
        )
        data = docs.select(schema.names).to_arrow().cast(schema)
        current = self._table(SPEAKERS)
        if current is not None and _same_rows(current, data, "global_speaker_id"):
            return docs.height  # nothing changed: no new version
        # "overwrite" on a missing table makes Lance warn on stderr: create the first one
        try:
            try:
                mode = "overwrite" if current is not None else "create"
                table = db.create_table(SPEAKERS, data=data, mode=mode)
                if mode == "overwrite":
                    _cleanup(table)
            except ValueError as exc:  # two writers at once: the other created it first
                if "already exists" not in str(exc):
                    raise
                db.create_table(SPEAKERS, data=data, mode="overwrite")
        except RuntimeError as exc:  # two overwrites at once: Lance commits one, asks the other to retry
            if "commit conflict" in str(exc).lower():
                raise WriteConflict(str(exc)) from None
            raise
        return docs.height

    def similar_speakers(self, vector: Sequence[float], model: str, limit: int) -> list[Hit]:
        table = self._table(SPEAKERS)
        if table is None:
            return []
        rows = (
            table.search(np.asarray(vector, np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .where(f"model = {_quote(model)}", prefilter=True)
            .limit(limit)
            .to_list()
        )
        return [Hit(r["global_speaker_id"], 1.0 - float(r["_distance"]), _doc(r)) for r in rows]

    def speaker_vector(self, global_speaker_id: str) -> tuple[list[float], str] | None:
        table = self._table(SPEAKERS)
        if table is None:
            return None
        rows = table.search().where(f"global_speaker_id = {_quote(global_speaker_id)}").limit(1).to_list()
        return (list(rows[0]["vector"]), rows[0]["model"]) if rows else None


def _cleanup(table) -> None:
    """Fold new rows into the indexes and compact small fragments (``optimize``), then remove
    the table's versions older than the retention and the files only they used (no new
    version when there is nothing to fold in). A failure (a concurrent writer's commit, a
    store hiccup) costs disk only: logged, and the next write cleans up."""
    try:
        table.optimize(cleanup_older_than=version_retention())
    except Exception as exc:
        log.warning("search index: old versions of %s not cleaned up: %s", table.name, exc)


def _same_rows(table, data: pa.Table, key: str) -> bool:
    """Whether ``table`` holds exactly the rows of ``data`` (same schema, any order)."""
    if table.schema != data.schema or table.count_rows() != data.num_rows:
        return False
    have = pl.from_arrow(table.to_arrow().select(data.schema.names).cast(data.schema)).sort(key)
    return have.equals(pl.from_arrow(data).sort(key))


def _doc(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("vector", "_score", "_distance", "_relevance_score")}

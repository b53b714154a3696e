"""Indexing: a batch's ``chunks`` into the search backend, the whole index rebuilt, and the
global speaker ids of indexed batches kept in step (``resync_speaker_ids``).

Split out of :mod:`.service` (which re-exports these names, the entry point the assets and the
CLI import from); see its docstring for what each does and why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import polars as pl

from ..storage import Warehouse
from .backends import Filters, SearchBackend, empty_docs

log = logging.getLogger(__name__)


# -- indexing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexReport:
    batch_id: str
    chunks: int  # rows of `chunks` of the configured model
    indexed: int
    deleted: int
    indexed_total: int  # documents of this batch and model in the index after the write
    other_models: dict[str, int]  # model -> chunks left out
    without_global_id: int
    elapsed_s: float


def _drop_of(wh: Warehouse, batch_id: str) -> str | None:
    batches = wh.read_table("batches", batch_id)
    if batches is None or batches.is_empty():
        return None
    return batches["drop"][0]


def batch_documents(wh: Warehouse, batch_id: str, model: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The batch's documents for ``model``, and its chunks made by other models."""
    from ..speakers.state import read_clusters

    chunks = wh.read_table("chunks", batch_id)
    if chunks is None or chunks.is_empty():
        return empty_docs(), pl.DataFrame(schema={"model": pl.Utf8})
    current = chunks.filter(pl.col("model") == model)
    other = chunks.filter(pl.col("model") != model).select("model")
    media = wh.read_table("media", batch_id)
    sources = (
        media.filter(pl.col("media_id").is_not_null()).select("media_id", "source_uri").unique("media_id")
        if media is not None
        else pl.DataFrame(schema={"media_id": pl.Utf8, "source_uri": pl.Utf8})
    )
    clusters = read_clusters(wh, [batch_id]).select("media_id", "speaker", "global_speaker_id")
    docs = (
        current.join(sources, on="media_id", how="left")
        .join(clusters, on=["media_id", "speaker"], how="left")
        .with_columns(
            id=pl.col("media_id") + ":" + pl.col("chunk_index").cast(pl.Utf8),
            drop=pl.lit(_drop_of(wh, batch_id), pl.Utf8),
            vector=pl.col("embedding"),
        )
    )
    template = empty_docs()
    return docs.select([pl.col(c).cast(t) for c, t in template.schema.items()]), other


def index_batch(wh: Warehouse, backend: SearchBackend, batch_id: str, model: str) -> IndexReport:
    """Write the batch's chunks to ``backend`` (ids ``<media_id>:<chunk_index>``: a re-run
    overwrites) and delete the batch's documents that are no longer chunks."""
    started = time.perf_counter()
    docs, other = batch_documents(wh, batch_id, model)
    backend.check()
    kept = dict(docs.group_by("media_id").len().iter_rows()) if docs.height else {}
    # a backend that can tell (LanceDB) gets only what changes: re-publishing an unchanged
    # batch writes nothing (each Lance write is a new version with files of its own)
    pending = getattr(backend, "pending_changes", None)
    to_write, leftovers = pending(batch_id, docs, kept) if pending is not None else (docs, None)
    indexed = backend.upsert_chunks(to_write)
    deleted = backend.delete_leftovers(batch_id, kept) if leftovers is None or leftovers else 0
    total = backend.count(Filters(model=model, batch_id=batch_id))
    published = docs.select("media_id", "speaker", "global_speaker_id").unique().with_columns(model=pl.lit(model))
    wh.write_parquet(published_path(wh, backend, batch_id), published.sort("media_id", "speaker"))
    others = dict(other.group_by("model").len().iter_rows()) if other.height else {}
    return IndexReport(
        batch_id=batch_id,
        chunks=docs.height,
        indexed=indexed,
        deleted=deleted,
        indexed_total=total,
        other_models=others,
        without_global_id=docs.filter(pl.col("global_speaker_id").is_null()).height,
        elapsed_s=time.perf_counter() - started,
    )


@dataclass
class RebuildReport:
    batches: int
    documents: int
    index: str | None  # the new OpenSearch index behind the alias; None for LanceDB
    elapsed_s: float


def rebuild_index(wh: Warehouse, backend: SearchBackend, model: str) -> RebuildReport:
    """The whole search index again from the ``chunks`` tables alone (a new mapping, a lost
    or damaged index, an archive moving to OpenSearch): OpenSearch loads every batch into a
    new index with refresh off and swaps the alias in one call at the end, so searches see
    the old index until the new one is complete; LanceDB upserts every batch in place and
    drops each batch's leftovers. Nothing is re-embedded."""
    started = time.perf_counter()
    batches = wh.batch_ids("chunks")
    backend.check()
    rebuild = getattr(backend, "rebuild", None)
    if rebuild is None:
        # documents in the index afterwards (an unchanged batch is not written again)
        total = sum(index_batch(wh, backend, b, model).indexed_total for b in batches)
        return RebuildReport(len(batches), total, None, time.perf_counter() - started)
    published: dict[str, pl.DataFrame] = {}

    def documents():
        for b in batches:
            docs, _ = batch_documents(wh, b, model)
            published[b] = docs.select("media_id", "speaker", "global_speaker_id").unique()
            yield docs

    from ..schemas import TEXT_EMBEDDING_DIM

    name, total = rebuild(documents(), TEXT_EMBEDDING_DIM)
    for b, keys in published.items():
        wh.write_parquet(
            published_path(wh, backend, b), keys.with_columns(model=pl.lit(model)).sort("media_id", "speaker")
        )
    return RebuildReport(len(batches), total, name, time.perf_counter() - started)


PUBLISHED_DIR = "_search_published"


def _published_dir(wh: Warehouse, backend: SearchBackend) -> str:
    """One folder per backend and index (a LanceDB location, an OpenSearch URL + alias); a
    LanceDB index inside the warehouse is named relative to it (a copied warehouse keeps it)."""
    d = backend.describe()
    where = "|".join(str(d.get(k)).replace(wh.root_uri, "<warehouse>") for k in ("index", "url", "alias"))
    return wh.path(PUBLISHED_DIR, f"{d['backend']}-{hashlib.sha256(where.encode()).hexdigest()[:12]}")


def published_path(wh: Warehouse, backend: SearchBackend, batch_id: str) -> str:
    return f"{_published_dir(wh, backend)}/{batch_id}.parquet"


def resync_speaker_ids(wh: Warehouse, backend: SearchBackend) -> list[str]:
    """Re-index every batch whose documents carry a global speaker id that is no longer the
    one its local speaker has (a split, a re-clustering, a merge); returns those batches.
    Costs one read of the committed clusters and one small object per indexed batch."""
    d = _published_dir(wh, backend)
    names = [n for n in wh.list_names(d) if n.endswith(".parquet")]
    if not names:
        return []
    from ..speakers.state import read_clusters

    now = (
        read_clusters(wh)
        .select("media_id", "speaker", pl.col("global_speaker_id").alias("now"))
        .unique(["media_id", "speaker"])
    )
    redone = []
    for name in names:
        pub = wh.read_parquet(f"{d}/{name}")
        if pub is None or pub.is_empty():
            continue
        moved = pub.join(now, on=["media_id", "speaker"], how="left").filter(
            pl.col("global_speaker_id").ne_missing(pl.col("now"))
        )
        if moved.height:
            batch_id = name.removesuffix(".parquet")
            report = index_batch(wh, backend, batch_id, pub["model"][0])
            log.info("batch %s re-indexed: %d speakers changed global id", batch_id, moved.height)
            redone.append(report.batch_id)
    return redone

"""Search over the warehouse: index a batch, answer a query, keep the speakers index.

Dagster-free; ``assets/search.py`` and ``cli/search.py`` are thin front ends over these functions.

- :func:`index_batch` writes a batch's ``chunks`` (of the configured text model) to the
  backend with their source file, drop and global speaker ids, idempotently, and deletes the
  batch's documents that are no longer chunks (a file re-chunked into fewer passages, a file
  that now has none). Chunks of another model are left out and reported by batch. On LanceDB
  only new or changed documents are written (``pending_changes``): re-publishing an unchanged
  batch writes nothing to the index.
- :func:`search` runs ``text`` (BM25), ``semantic`` (cosine k-NN over the text embeddings)
  or ``hybrid`` (both, fused by reciprocal rank in the client) with filters, and resolves
  speakers through the speaker state at query time: merged ids to their heir, ids to names.
  Filtering by a name finds the ids named so; renaming never touches the index.
  ``min_quality`` leaves out passages whose audio scored under a DNSMOS ``ovrl`` floor
  (:func:`judge_passages`): in this service, after retrieval, the same for LanceDB and
  OpenSearch (the index holds no scores, so a quality step run after publishing needs no
  re-index), with over-fetch.
- :func:`refresh_speakers` / :func:`similar_speakers`: one document per active global voice
  (centroid, files, talk time), searched by k-NN for the nearest voices.
- :func:`resync_speaker_ids`: a split (``speakers split``, or a full re-clustering cutting
  a voice in two) gives some members a new global id, which query-time resolution cannot
  know (merges it can: the heir is in the speaker state). Each indexed batch records the
  ``(media_id, speaker, global_speaker_id)`` its documents carry (``_search_published/``);
  after a clustering run or a split/merge, the batches whose ids changed are re-indexed
  (the same idempotent :func:`index_batch`: nothing is re-embedded).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..schemas import GLOBAL_ID
from ..speakers.voices import resolve_merged
from ..storage import Warehouse
from .backends import Filters, Hit, SearchBackend, VectorSearchUnsupported, empty_docs
from .ranking import highlight, reciprocal_rank_fusion

log = logging.getLogger(__name__)

MODES = ("hybrid", "text", "semantic")
CANDIDATES = 50  # per retriever, before fusion
# --min-quality: each retriever is asked for OVERFETCH x as many, and again 4x deeper (up to
# MAX_DEPTH) while fewer than ``limit`` passages clear the floor and a list came back full
OVERFETCH = 4
MAX_DEPTH = 2000


# -- the backend --------------------------------------------------------------------------------
def open_search_backend(
    wh: Warehouse,
    backend: str = "lancedb",
    *,
    lancedb_uri: str | None = None,
    opensearch_url: str | None = None,
    opensearch_user: str | None = None,
    opensearch_password: str | None = None,
    index_prefix: str = "opentranscribe",
    verify_certs: bool = True,
) -> SearchBackend:
    """The configured backend: LanceDB under ``<root>/_search`` (default) or OpenSearch."""
    if backend == "lancedb":
        from .lance import LanceBackend

        return LanceBackend(lancedb_uri or f"{wh.root_uri}/_search", wh.s3)
    if backend == "opensearch":
        if not opensearch_url:
            raise ValueError("the opensearch search backend needs a URL (OPENSEARCH_URL)")
        from .opensearch import OpenSearchBackend

        return OpenSearchBackend(
            opensearch_url, opensearch_user, opensearch_password, prefix=index_prefix, verify_certs=verify_certs
        )
    raise ValueError(f"unknown search backend {backend!r} (lancedb or opensearch)")


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


# -- speakers at query time -----------------------------------------------------------------------
class UnknownSpeakerFilter(LookupError):
    """``--speaker`` names no voice."""


@dataclass
class SpeakerDirectory:
    """Names and merges of global voices, read from the committed speaker state."""

    names: dict[str, str]
    heirs: dict[str, str]  # merged id -> the id that absorbed it

    @classmethod
    def read(cls, wh: Warehouse) -> SpeakerDirectory:
        from ..speakers.state import CENTROIDS, SpeakerState

        state = SpeakerState(wh)
        gen = state.current()
        profiles = state.profiles(gen)[0]
        centroids = state.read(gen, CENTROIDS)
        merged = centroids.filter(pl.col("status") == "merged") if centroids.height else centroids
        return cls(
            names=dict(profiles.select("global_speaker_id", "name").iter_rows()),
            heirs=dict(merged.select("global_speaker_id", "merged_into").iter_rows()) if merged.height else {},
        )

    def current(self, gid: str | None) -> str | None:
        return resolve_merged(self.heirs, gid) if gid is not None else None

    def ids_for(self, who: str) -> list[str]:
        """Every id that means the voice ``who`` names (a global id or a name, any case):
        the voice's id and the ids merged into it."""
        if re.match(GLOBAL_ID, who.strip()):
            targets = {self.current(who.strip())}
        else:
            wanted = who.strip().casefold()
            targets = {self.current(g) for g, n in self.names.items() if n.casefold() == wanted}
            if not targets:
                known = ", ".join(sorted(set(self.names.values()))[:10]) or "none named yet"
                raise UnknownSpeakerFilter(f"no speaker named {who!r} (named: {known})")
        merged = {g for g in self.heirs if self.current(g) in targets}
        return sorted(targets | merged)


# -- queries --------------------------------------------------------------------------------------
@dataclass
class Result:
    media_id: str
    source_uri: str | None
    start_s: float
    end_s: float
    speaker: str | None
    global_speaker_id: str | None
    speaker_name: str | None
    text: str
    highlighted: str
    score: float
    language: str | None = None
    drop: str | None = None
    batch_id: str | None = None
    chunk_index: int | None = None
    ranks: dict = field(default_factory=dict)
    quality: float | None = None  # speech-weighted DNSMOS ovrl of the passage (min_quality only; None: unscored)

    def as_json(self) -> dict:
        return {
            "media_id": self.media_id,
            "source_uri": self.source_uri,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "speaker": self.speaker,
            "global_speaker_id": self.global_speaker_id,
            "speaker_name": self.speaker_name,
            "text": self.text,
            "score": self.score,
            "language": self.language,
            "drop": self.drop,
            "chunk_index": self.chunk_index,
            "quality": self.quality,
        }

    @property
    def who(self) -> str:
        return self.speaker_name or self.global_speaker_id or self.speaker or "?"


@dataclass
class SearchOutcome:
    results: list[Result]
    indexed: int  # documents of the configured model in the index
    warnings: list[str] = field(default_factory=list)
    left_out: int = 0  # passages retrieved but under ``min_quality``
    unscored: int = 0  # results no quality score covers (kept)


class PassageJudge:
    """The DNSMOS ``ovrl`` of search passages, for ``min_quality``.

    A passage (a chunk: part of one speaker's turn, several segments) is judged by the
    speech-weighted DNSMOS ``ovrl`` of the segments it overlaps
    (:func:`~opentranscribe_pipeline.query.quality.span_quality`); a passage no scored
    segment covers is unscored and kept. Reads the ``segment_quality`` file of each batch
    the hits come from, once per batch (only the media items hit)."""

    def __init__(self, wh: Warehouse):
        self.wh = wh
        self.scores: dict[str, pl.DataFrame] = {}  # batch_id -> scores of the media read
        self.media: dict[str, set[str]] = {}
        self.known: dict[str, float | None] = {}  # doc id -> quality

    def __call__(self, docs: Sequence[dict]) -> dict[str, float | None]:
        from ..query.quality import segment_scores, span_quality

        todo = [d for d in docs if d["id"] not in self.known]
        wanted: dict[str, set[str]] = {}
        for d in todo:
            wanted.setdefault(d.get("batch_id") or "", set()).add(d["media_id"])
        for batch_id, media_ids in wanted.items():
            missing = media_ids - self.media.get(batch_id, set())
            if not missing or not batch_id:
                continue
            got = segment_scores(self.wh, [batch_id], missing)
            self.scores[batch_id] = pl.concat([self.scores[batch_id], got]) if batch_id in self.scores else got
            self.media.setdefault(batch_id, set()).update(missing)
        for batch_id in wanted:
            batch_docs = [d for d in todo if (d.get("batch_id") or "") == batch_id]
            spans = pl.DataFrame(
                {
                    "id": [d["id"] for d in batch_docs],
                    "media_id": [d["media_id"] for d in batch_docs],
                    "start_s": [float(d["start_s"]) for d in batch_docs],
                    "end_s": [float(d["end_s"]) for d in batch_docs],
                },
                schema={"id": pl.Utf8, "media_id": pl.Utf8, "start_s": pl.Float64, "end_s": pl.Float64},
            )
            scores = self.scores.get(batch_id)
            if scores is None:
                scores = pl.DataFrame(
                    schema={"media_id": pl.Utf8, "start_s": pl.Float64, "end_s": pl.Float64, "dnsmos_ovrl": pl.Float64}
                )
            judged = span_quality(spans, scores)
            self.known.update(dict(judged.select("id", "quality").iter_rows()))
        return {d["id"]: self.known[d["id"]] for d in docs}


def judge_passages(wh: Warehouse, docs: Sequence[dict]) -> dict[str, float | None]:
    """``doc id -> quality`` (speech-weighted DNSMOS ovrl; None: unscored) of index documents
    (``id``, ``batch_id``, ``media_id``, ``start_s``, ``end_s``): see :class:`PassageJudge`."""
    return PassageJudge(wh)(docs)


def search(
    wh: Warehouse,
    backend: SearchBackend,
    query: str,
    *,
    model: str,
    embed: Callable[[str], np.ndarray] | None = None,
    mode: str = "hybrid",
    speaker: str | None = None,
    language: str | None = None,
    drop: str | None = None,
    limit: int = 10,
    directory: SpeakerDirectory | None = None,
    min_quality: float | None = None,
) -> SearchOutcome:
    """The best ``limit`` passages for ``query``. ``embed`` turns the query into a vector
    with the same model as the chunks (needed for ``semantic`` and ``hybrid``).

    ``min_quality`` (a DNSMOS ``ovrl`` score, 1-5): passages whose speech-weighted ``ovrl``
    is under it are left out before ranking; unscored passages are kept (see
    :class:`PassageJudge`). Filtered here after retrieval, on every backend alike: each
    retriever is asked for ``OVERFETCH`` times the usual depth, and deeper (x4, up to
    ``MAX_DEPTH``) while fewer than ``limit`` passages pass and a list came back full."""
    if min_quality is not None:
        from ..query.quality import check_floor

        try:
            min_quality = check_floor(min_quality)
        except LookupError as exc:
            raise ValueError(str(exc)) from None
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r} ({', '.join(MODES)})")
    directory = directory or SpeakerDirectory.read(wh)
    ids = directory.ids_for(speaker) if speaker else None
    filters = Filters(model=model, global_speaker_ids=ids, language=language or None, drop=drop or None)
    indexed = backend.count(Filters(model=model))
    warnings: list[str] = []
    if indexed == 0:
        return SearchOutcome([], 0, warnings)
    if mode in ("semantic", "hybrid") and embed is None:
        raise ValueError(f"{mode} search needs the text-embedding model")
    vector = embed(query) if mode in ("semantic", "hybrid") else None
    judge = PassageJudge(wh) if min_quality is not None else None
    depth = max(CANDIDATES, limit) if judge is None else max(CANDIDATES, limit * OVERFETCH)
    while True:
        lists: dict[str, Sequence[Hit]] = {}
        if mode in ("text", "hybrid"):
            lists["text"] = backend.text_search(query, filters, depth)
        if mode in ("semantic", "hybrid"):
            try:
                lists["semantic"] = backend.vector_search(vector, filters, depth)
            except VectorSearchUnsupported as exc:
                if mode == "semantic":
                    raise
                if not any("hybrid search used full text only" in w for w in warnings):
                    warnings.append(f"{exc}; hybrid search used full text only")
        if judge is None:
            break
        quality = judge([h.doc for hits in lists.values() for h in hits])
        kept_lists = {
            name: [h for h in hits if quality[h.id] is None or quality[h.id] >= min_quality]
            for name, hits in lists.items()
        }
        kept_ids = {h.id for hits in kept_lists.values() for h in hits}
        full = any(len(hits) >= depth for hits in lists.values())
        if len(kept_ids) >= limit or not full or depth >= MAX_DEPTH:
            left_out = len({h.id for hits in lists.values() for h in hits} - kept_ids)
            if len(kept_ids) < limit and full:
                warnings.append(
                    f"{left_out} passage(s) under --min-quality {min_quality:g} left out of the best {depth} "
                    f"per retriever; fewer than {limit} passed"
                )
            lists = kept_lists
            break
        depth = min(MAX_DEPTH, depth * 4)
    hits = reciprocal_rank_fusion(lists, limit) if mode == "hybrid" else list(lists[mode])[:limit]
    results = []
    for h in hits:
        d = h.doc
        gid = directory.current(d.get("global_speaker_id"))
        results.append(
            Result(
                media_id=d["media_id"],
                source_uri=d.get("source_uri"),
                start_s=float(d["start_s"]),
                end_s=float(d["end_s"]),
                speaker=d.get("speaker"),
                global_speaker_id=gid,
                speaker_name=directory.names.get(gid) if gid else None,
                text=d["text"],
                highlighted=h.highlight or highlight(d["text"], query),
                score=round(float(h.score), 6),
                language=d.get("language"),
                drop=d.get("drop"),
                batch_id=d.get("batch_id"),
                chunk_index=d.get("chunk_index"),
                ranks=dict(h.ranks),
                quality=None if judge is None or judge.known.get(h.id) is None else round(judge.known[h.id], 4),
            )
        )
    if judge is None:
        return SearchOutcome(results, indexed, warnings)
    retrieved_poor = sum(1 for q in judge.known.values() if q is not None and q < min_quality)
    unscored = sum(1 for r in results if r.quality is None)
    return SearchOutcome(results, indexed, warnings, left_out=retrieved_poor, unscored=unscored)


def query_embedder(model: str, device: str = "cpu") -> Callable[[str], np.ndarray]:
    """A function embedding one query with ``model`` (loaded on first use, kept for the
    process: a CLI call or a test asks it a few times)."""
    from .embedding import TextEmbedder, resolve_text_model

    holder: dict = {}

    def embed(text: str) -> np.ndarray:
        if "m" not in holder:
            holder["m"] = TextEmbedder(resolve_text_model(model), device=device).__enter__()
        return holder["m"].encode([text])[0]

    return embed


# -- the speakers index ---------------------------------------------------------------------------
def speaker_documents(wh: Warehouse) -> pl.DataFrame:
    """One row per active global voice: centroid, model, files, talk time."""
    from ..speakers.state import CENTROIDS, SpeakerState

    state = SpeakerState(wh)
    centroids = state.read(state.current(), CENTROIDS)
    if centroids.is_empty():
        return pl.DataFrame(schema={"global_speaker_id": pl.Utf8, "model": pl.Utf8, "vector": pl.List(pl.Float32)})
    return (
        centroids.filter(pl.col("status") == "active")
        .select(
            "global_speaker_id",
            "model",
            pl.col("centroid").alias("vector"),
            pl.col("n_members").alias("n_files"),
            "speech_s",
        )
        .sort("global_speaker_id")
    )


SPEAKERS_WRITE_ATTEMPTS = 6


def refresh_speakers(wh: Warehouse, backend: SearchBackend) -> int:
    """The speakers index becomes the active voices of the committed generation. Two writers
    at once (two clustering runs finishing together): the one whose replace lost the race
    reads the generation again and writes it (the newest committed state wins)."""
    from .lance import WriteConflict

    backend.check()
    for attempt in range(SPEAKERS_WRITE_ATTEMPTS):
        try:
            return backend.replace_speakers(speaker_documents(wh))
        except WriteConflict as exc:
            if attempt == SPEAKERS_WRITE_ATTEMPTS - 1:
                raise
            wait = 0.1 * 2**attempt * (1 + random.random())
            log.info("speakers index: %s; again in %.2f s", str(exc).splitlines()[0][:120], wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def similar_speakers(wh: Warehouse, backend: SearchBackend, who: str, limit: int = 5) -> list[dict]:
    """The voices nearest to ``who`` (a global id or a name) by cosine of their centroids,
    found by k-NN in the speakers index (no scan of the archive)."""
    directory = SpeakerDirectory.read(wh)
    ids = directory.ids_for(who)
    target = directory.current(ids[0]) if re.match(GLOBAL_ID, who.strip()) else ids[0]
    found = backend.speaker_vector(target)
    if found is None:
        raise UnknownSpeakerFilter(
            f"{target} is not in the speakers index of {backend.describe().get('backend')} "
            "(run `opentranscribe speakers recluster`, or process a batch, to refresh it)"
        )
    vector, model = found
    hits = backend.similar_speakers(vector, model, limit + 1)
    out = []
    for h in hits:
        gid = h.doc.get("global_speaker_id", h.id)
        if gid == target:
            continue
        out.append(
            {
                "global_speaker_id": gid,
                "name": directory.names.get(gid),
                "similarity": round(float(h.score), 4),
                "n_files": h.doc.get("n_files"),
                "speech_s": h.doc.get("speech_s"),
            }
        )
    return out[:limit]

"""Search over the warehouse: index a batch, answer a query, keep the speakers index.

Dagster-free; ``assets/search.py`` and ``cli/search.py`` are thin front ends over these functions.
Indexing lives in :mod:`.indexing`, the passage judge in :mod:`.passages`, search over the
``summaries`` tables in :mod:`.summaries`; the names stay importable from here.

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
from .backends import Filters, Hit, SearchBackend, VectorSearchUnsupported
from .indexing import (  # re-exported: the assets, the CLI and the tests import them from here
    PUBLISHED_DIR,
    IndexReport,
    RebuildReport,
    batch_documents,
    index_batch,
    published_path,
    rebuild_index,
    resync_speaker_ids,
)
from .passages import PassageJudge, judge_passages
from .ranking import highlight, reciprocal_rank_fusion

__all__ = [
    "PUBLISHED_DIR",
    "IndexReport",
    "PassageJudge",
    "RebuildReport",
    "SearchOutcome",
    "SpeakerDirectory",
    "UnknownSpeakerFilter",
    "batch_documents",
    "index_batch",
    "judge_passages",
    "open_search_backend",
    "published_path",
    "query_embedder",
    "rebuild_index",
    "refresh_speakers",
    "resync_speaker_ids",
    "search",
    "similar_speakers",
    "speaker_documents",
]

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

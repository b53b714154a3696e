"""What every search backend offers, and the documents they hold.

A chunk document is one row of ``chunks`` plus what search shows and filters on without
reading the tables: ``id`` (``<media_id>:<chunk_index>``), ``batch_id``, ``drop``,
``source_uri`` and the ``global_speaker_id`` of its local speaker when the batch was
published. Names are *not* in the documents: they are looked up in ``speaker_profiles`` at
query time, so renaming a voice changes what search shows and filters on without touching
the index (and never re-embeds anything).

Two implementations: :class:`~.lance.LanceBackend` (embedded, the default) and
:class:`~.opensearch.OpenSearchBackend` (production).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from ..schemas import EMBEDDING_DIM, TEXT_EMBEDDING_DIM

DOC_COLUMNS = (
    "id",
    "media_id",
    "chunk_index",
    "batch_id",
    "drop",
    "source_uri",
    "start_s",
    "end_s",
    "speaker",
    "global_speaker_id",
    "language",
    "text",
    "model",
    "vector",
)
SPEAKER_DOC_COLUMNS = ("global_speaker_id", "model", "vector", "n_files", "speech_s")


class SearchUnavailable(RuntimeError):
    """The backend cannot be used (unreachable, refused credentials): one line naming where."""


class VectorSearchUnsupported(RuntimeError):
    """The backend answers but has no k-NN (osmem-server, OpenSearch without the k-NN plugin)."""


@dataclass(frozen=True)
class Filters:
    """What a query is restricted to; ``None`` means no restriction."""

    model: str | None = None  # always set by the search service: vectors of other models never match
    global_speaker_ids: Sequence[str] | None = None
    language: str | None = None
    drop: str | None = None
    batch_id: str | None = None


@dataclass
class Hit:
    id: str
    score: float
    doc: dict
    highlight: str | None = None  # text with <em>…</em> around the matched words, when the backend made one
    ranks: dict = field(default_factory=dict)  # rank per retriever (hybrid)


class SearchBackend(Protocol):
    name: str

    def describe(self) -> dict: ...

    def check(self) -> None: ...

    def upsert_chunks(self, docs: pl.DataFrame) -> int: ...

    def delete_leftovers(self, batch_id: str, kept: Mapping[str, int]) -> int: ...

    def count(self, filters: Filters | None = None) -> int: ...

    def text_search(self, query: str, filters: Filters, limit: int) -> list[Hit]: ...

    def vector_search(self, vector: Sequence[float], filters: Filters, limit: int) -> list[Hit]: ...

    def replace_speakers(self, docs: pl.DataFrame) -> int: ...

    def similar_speakers(self, vector: Sequence[float], model: str, limit: int) -> list[Hit]: ...


def empty_docs() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "id": pl.Utf8,
            "media_id": pl.Utf8,
            "chunk_index": pl.Int32,
            "batch_id": pl.Utf8,
            "drop": pl.Utf8,
            "source_uri": pl.Utf8,
            "start_s": pl.Float64,
            "end_s": pl.Float64,
            "speaker": pl.Utf8,
            "global_speaker_id": pl.Utf8,
            "language": pl.Utf8,
            "text": pl.Utf8,
            "model": pl.Utf8,
            "vector": pl.Array(pl.Float32, TEXT_EMBEDDING_DIM),
        }
    )


def speaker_docs_schema() -> dict:
    return {
        "global_speaker_id": pl.Utf8,
        "model": pl.Utf8,
        "vector": pl.Array(pl.Float32, EMBEDDING_DIM),
        "n_files": pl.Int64,
        "speech_s": pl.Float64,
    }

"""Search configuration: the text-embedding model and the search backend."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..search.chunking import CHUNKER_VERSION
from ..search.embedding import ResolvedTextModel, TextEmbedder, resolve_text_model
from ..speech.asr import resolve_device


class TextEmbeddingResource(dg.ConfigurableResource):
    """The sentence-transformers model that embeds passages and queries (a ``StageModel``).
    ``model``: ``packaged:all-minilm-l6-v2`` (offline default), any sentence-transformers id, or
    a local directory; unset falls back to ``OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL``."""

    model: str | None = Field(default=None, description="packaged:all-minilm-l6-v2 | hub id | /local/dir")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    batch_size: int = Field(default=64, description="passages per forward pass; lower it on out-of-memory")
    target_words: int = Field(
        default=settings.CHUNK_TARGET_WORDS, description="a passage ends at the first sentence end past this"
    )

    def spec(self) -> str:
        return self.model or settings.text_embedding_model()

    def resolved(self) -> ResolvedTextModel:
        return resolve_text_model(self.spec())

    def model_version(self) -> str:
        return f"{CHUNKER_VERSION}:{self.target_words}|{self.resolved().version}"

    def model_columns(self) -> dict[str, str]:
        return {"model": self.spec()}

    def load(self) -> TextEmbedder:
        return TextEmbedder(self.resolved(), device=resolve_device(self.device), batch_size=self.batch_size)


class SearchResource(dg.ConfigurableResource):
    """Where the search index lives. ``backend``: ``lancedb`` (embedded, under
    ``<warehouse>/_search``) or ``opensearch``; unset fields fall back to
    ``OPENTRANSCRIBE_SEARCH_BACKEND``, ``OPENSEARCH_URL``, ``OPENSEARCH_USER``,
    ``OPENSEARCH_PASSWORD``, ``OPENSEARCH_INDEX_PREFIX``, ``OPENTRANSCRIBE_LANCEDB_URI``. In
    production pass the URL and credentials as ``dg.EnvVar(...)`` so the UI never shows them."""

    backend: str | None = Field(default=None, description="lancedb (default) or opensearch")
    opensearch_url: str | None = Field(default=None, description="https://host:9200 (EnvVar('OPENSEARCH_URL'))")
    opensearch_user: str | None = None
    opensearch_password: str | None = Field(default=None, description="EnvVar('OPENSEARCH_PASSWORD')")
    index_prefix: str | None = Field(default=None, description="aliases <prefix>-chunks, <prefix>-speakers")
    verify_certs: bool = True
    lancedb_uri: str | None = Field(default=None, description="default: <warehouse>/_search")

    def backend_name(self) -> str:
        return (self.backend or settings.search_backend()).lower()

    def open(self, wh):
        from ..search.service import open_search_backend

        return open_search_backend(
            wh,
            self.backend_name(),
            lancedb_uri=self.lancedb_uri or settings.lancedb_uri(),
            opensearch_url=self.opensearch_url or settings.opensearch_url(),
            opensearch_user=self.opensearch_user or settings.opensearch_user(),
            opensearch_password=self.opensearch_password or settings.opensearch_password(),
            index_prefix=self.index_prefix or settings.opensearch_index_prefix(),
            verify_certs=self.verify_certs,
        )

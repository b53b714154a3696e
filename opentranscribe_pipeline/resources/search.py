"""Search configuration: the text-embedding model and the search backend."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..search.chunking import CHUNKER_VERSION
from ..search.embedding import ResolvedTextModel, TextEmbedder, resolve_text_model
from ..speech.device import resolve_device


class TextEmbeddingResource(dg.ConfigurableResource):
    """The sentence-transformers model that embeds passages and queries (a ``StageModel``).
    ``model``: ``packaged:all-minilm-l6-v2`` (offline default), any sentence-transformers id, or
    a local directory; its default is ``OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL``, read when the
    resource is built, so the UI shows the model the runs use."""

    model: str = Field(
        default_factory=settings.text_embedding_model,
        description="packaged:all-minilm-l6-v2 | hub id | /local/dir (default: OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL)",
    )
    device: str = Field(default="auto", description="auto, cpu or cuda")
    batch_size: int = Field(default=64, description="passages per forward pass; lower it on out-of-memory")
    target_words: int = Field(
        default=settings.CHUNK_TARGET_WORDS, description="a passage ends at the first sentence end past this"
    )

    def spec(self) -> str:
        return self.model

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
    ``<warehouse>/_search``) or ``opensearch``. The defaults are the settings
    (``OPENTRANSCRIBE_SEARCH_BACKEND``, ``OPENSEARCH_INDEX_PREFIX``, ``OPENTRANSCRIBE_LANCEDB_URI``),
    read when the resource is built, so the UI shows what the runs use. The OpenSearch URL and
    credentials are ``dg.EnvVar`` in the code location (:meth:`from_settings`: shown by
    variable name, resolved when a run starts); ``None``: ``OPENSEARCH_URL``,
    ``OPENSEARCH_USER``, ``OPENSEARCH_PASSWORD`` read when the index is opened (a resource
    built outside Dagster, e.g. by the CLI)."""

    backend: str = Field(
        default_factory=settings.search_backend,
        description="lancedb (default) or opensearch (default: OPENTRANSCRIBE_SEARCH_BACKEND)",
    )
    opensearch_url: str | None = Field(default=None, description="https://host:9200: EnvVar('OPENSEARCH_URL')")
    opensearch_user: str | None = Field(default=None, description="EnvVar('OPENSEARCH_USER')")
    opensearch_password: str | None = Field(default=None, description="EnvVar('OPENSEARCH_PASSWORD')")
    index_prefix: str = Field(
        default_factory=settings.opensearch_index_prefix,
        description="aliases <prefix>-chunks, <prefix>-speakers (default: OPENSEARCH_INDEX_PREFIX, else opentranscribe)",
    )
    verify_certs: bool = True
    lancedb_uri: str | None = Field(
        default_factory=settings.lancedb_uri,
        description="default: OPENTRANSCRIBE_LANCEDB_URI, else <warehouse>/_search",
    )

    @classmethod
    def from_settings(cls) -> SearchResource:
        """The code location's search resource: values from the settings, the OpenSearch
        endpoint and credentials that are set as ``dg.EnvVar``."""
        secrets = {
            "opensearch_url": ("OPENSEARCH_URL", settings.opensearch_url()),
            "opensearch_user": ("OPENSEARCH_USER", settings.opensearch_user()),
            "opensearch_password": ("OPENSEARCH_PASSWORD", settings.opensearch_password()),
        }
        return cls(
            backend=settings.search_backend(),
            index_prefix=settings.opensearch_index_prefix(),
            lancedb_uri=settings.lancedb_uri(),
            **{field: dg.EnvVar(name) for field, (name, value) in secrets.items() if value},
        )

    def backend_name(self) -> str:
        return self.backend.lower()

    def open(self, wh):
        from ..search.service import open_search_backend

        return open_search_backend(
            wh,
            self.backend_name(),
            lancedb_uri=self.lancedb_uri,
            opensearch_url=self.opensearch_url or settings.opensearch_url(),
            opensearch_user=self.opensearch_user or settings.opensearch_user(),
            opensearch_password=self.opensearch_password or settings.opensearch_password(),
            index_prefix=self.index_prefix,
            verify_certs=self.verify_certs,
        )

"""The production backend: OpenSearch through opensearch-py.

- Chunks live in an index with the mapping's version in its name
  (``<prefix>-chunks-v1-<UTC stamp>``) behind the alias ``<prefix>-chunks``; every read and
  write goes through the alias. :meth:`OpenSearchBackend.rebuild` loads a new index and
  swaps the alias in one ``_aliases`` call, then deletes the old index.
- ``text``: the ``english`` analyzer (stemming, stop words) plus ``text.exact`` (the
  ``standard`` analyzer: no stemming) for exact phrases; keyword fields for the filters
  (speaker, global speaker id, language, drop, batch, model, media id).
- ``vector``: ``knn_vector`` with HNSW on the ``lucene`` engine and ``cosinesimil`` (the
  engine is named explicitly: faiss rejects cosinesimil in some releases; lucene also
  filters inside the graph search). k-NN needs the k-NN plugin (any OpenSearch 2.x / 3.x
  distribution); hybrid ranking is done by the client, so no ML plugin is needed.
- Bulk writes through ``opensearchpy.helpers.bulk`` (500 documents a request; 429s retried
  with backoff by the helper, 5xx and timeouts by the transport), with the refresh interval
  switched off during loads of more than ``LARGE_LOAD`` documents.

The URL and credentials come from the resource (``EnvVar``); error messages name the URL
without its user info and never the password.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence

import polars as pl

from .backends import Filters, Hit, SearchUnavailable, VectorSearchUnsupported

log = logging.getLogger(__name__)

MAPPING_VERSION = 1
BULK_CHUNK = 500
LARGE_LOAD = 5_000
RETRY_STATUSES = (429, 500, 502, 503, 504)


def safe_url(url: str) -> str:
    """``url`` without user info (``https://user:pw@host`` -> ``https://host``)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def cosine(score: float) -> float:
    """The cosine similarity behind a lucene ``cosinesimil`` k-NN score ((1 + cos) / 2)."""
    return 2.0 * float(score) - 1.0


def chunk_mapping(dim: int) -> dict:
    return {
        "settings": {"index": {"knn": True, "refresh_interval": "1s"}},
        "mappings": {
            "properties": {
                "text": {
                    "type": "text",
                    "analyzer": "english",
                    "fields": {"exact": {"type": "text", "analyzer": "standard"}},
                },
                **{
                    k: {"type": "keyword"}
                    for k in (
                        "media_id",
                        "batch_id",
                        "drop",
                        "source_uri",
                        "speaker",
                        "global_speaker_id",
                        "language",
                        "model",
                    )
                },
                "chunk_index": {"type": "integer"},
                "start_s": {"type": "double"},
                "end_s": {"type": "double"},
                "vector": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {
                        "name": "hnsw",
                        "engine": "lucene",
                        "space_type": "cosinesimil",
                        "parameters": {"m": 16, "ef_construction": 128},
                    },
                },
            }
        },
    }


def speaker_mapping(dim: int) -> dict:
    return {
        "settings": {"index": {"knn": True}},
        "mappings": {
            "properties": {
                "global_speaker_id": {"type": "keyword"},
                "model": {"type": "keyword"},
                "n_files": {"type": "integer"},
                "speech_s": {"type": "double"},
                "vector": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {
                        "name": "hnsw",
                        "engine": "lucene",
                        "space_type": "cosinesimil",
                        "parameters": {"m": 24, "ef_construction": 128},
                    },
                },
            }
        },
    }


def query_filters(filters: Filters | None) -> list[dict]:
    if filters is None:
        return []
    out: list[dict] = []
    if filters.model:
        out.append({"term": {"model": filters.model}})
    if filters.global_speaker_ids is not None:
        out.append({"terms": {"global_speaker_id": list(filters.global_speaker_ids)}})
    if filters.language:
        out.append({"term": {"language": filters.language}})
    if filters.drop:
        out.append({"term": {"drop": filters.drop}})
    if filters.batch_id:
        out.append({"term": {"batch_id": filters.batch_id}})
    return out


class OpenSearchBackend:
    name = "opensearch"

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        prefix: str = "opentranscribe",
        verify_certs: bool = True,
        timeout_s: float = 30.0,
    ):
        from opensearchpy import OpenSearch

        self.url = safe_url(url)
        self.alias = f"{prefix}-chunks"
        self.speakers_alias = f"{prefix}-speakers"
        auth = (user, password or "") if user else None
        self.client = OpenSearch(
            hosts=[url],
            http_auth=auth,
            verify_certs=verify_certs,
            timeout=timeout_s,
            max_retries=3,
            retry_on_timeout=True,
            retry_on_status=RETRY_STATUSES[1:],
        )

    def describe(self) -> dict:
        return {"backend": self.name, "url": self.url, "alias": self.alias, "speakers_alias": self.speakers_alias}

    # -- errors ----------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        """Run one client call; a connection or credentials failure is one clear line."""
        from opensearchpy import exceptions as ex

        try:
            return fn(*args, **kwargs)
        except ex.AuthenticationException:
            raise SearchUnavailable(f"OpenSearch at {self.url} refused the credentials (401) while {what}") from None
        except ex.AuthorizationException:
            raise SearchUnavailable(f"OpenSearch at {self.url} denied access (403) while {what}") from None
        except ex.ConnectionError as exc:
            reason = type(exc.info).__name__ if getattr(exc, "info", None) is not None else "connection error"
            raise SearchUnavailable(f"cannot reach OpenSearch at {self.url} ({reason}) while {what}") from None

    def check(self) -> None:
        self._call("checking the cluster", self.client.info)

    # -- indices ---------------------------------------------------------------------------
    def _new_index_name(self, alias: str) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%f")
        return f"{alias}-v{MAPPING_VERSION}-{stamp}"

    def _indices_of(self, alias: str) -> list[str]:
        if not self._call("reading aliases", self.client.indices.exists_alias, name=alias):
            return []
        return sorted(self._call("reading aliases", self.client.indices.get_alias, name=alias))

    def index_name(self) -> str | None:
        names = self._indices_of(self.alias)
        return names[0] if names else None

    def _ensure(self, alias: str, body: dict) -> str:
        existing = self._indices_of(alias)
        if existing:
            return existing[0]
        name = self._new_index_name(alias)
        self._call("creating the index", self.client.indices.create, index=name, body=body)
        self._call("creating the alias", self.client.indices.put_alias, index=name, name=alias)
        log.info("created OpenSearch index %s behind alias %s", name, alias)
        return name

    # -- chunks ----------------------------------------------------------------------------
    def _actions(self, docs: pl.DataFrame, index: str) -> Iterator[dict]:
        for row in docs.iter_rows(named=True):
            source = {k: v for k, v in row.items() if k != "id"}
            source["vector"] = [float(x) for x in source["vector"]]
            yield {"_op_type": "index", "_index": index, "_id": row["id"], "_source": source}

    def _bulk(self, actions: Iterable[dict], n: int, index: str) -> int:
        from opensearchpy import helpers

        large = n > LARGE_LOAD
        if large:
            self._call(
                "switching refresh off",
                self.client.indices.put_settings,
                index=index,
                body={"index": {"refresh_interval": "-1"}},
            )
        try:
            done, _ = self._call(
                "bulk indexing",
                helpers.bulk,
                self.client,
                actions,
                chunk_size=BULK_CHUNK,
                max_retries=5,
                initial_backoff=1,
                max_backoff=30,
                raise_on_error=True,
            )
        finally:
            if large:
                self._call(
                    "restoring refresh",
                    self.client.indices.put_settings,
                    index=index,
                    body={"index": {"refresh_interval": "1s"}},
                )
        self._call("refreshing", self.client.indices.refresh, index=index)
        return int(done)

    def upsert_chunks(self, docs: pl.DataFrame) -> int:
        if docs.is_empty():
            return 0
        self._ensure(self.alias, chunk_mapping(docs.schema["vector"].size))
        return self._bulk(self._actions(docs, self.alias), docs.height, self.alias)

    def delete_leftovers(self, batch_id: str, kept: Mapping[str, int]) -> int:
        if not self._indices_of(self.alias):
            return 0
        stale: list[dict] = [{"bool": {"must_not": [{"terms": {"media_id": list(kept)}}]}}]
        stale += [
            {"bool": {"filter": [{"term": {"media_id": m}}, {"range": {"chunk_index": {"gte": int(n)}}}]}}
            for m, n in kept.items()
        ]
        body = {
            "query": {
                "bool": {"filter": [{"term": {"batch_id": batch_id}}], "should": stale, "minimum_should_match": 1}
            }
        }
        out = self._call(
            "deleting leftover chunks",
            self.client.delete_by_query,
            index=self.alias,
            body=body,
            refresh=True,
            conflicts="proceed",
        )
        return int(out.get("deleted", 0))

    def count(self, filters: Filters | None = None) -> int:
        if not self._indices_of(self.alias):
            return 0
        body = {"query": {"bool": {"filter": query_filters(filters)}}}
        return int(self._call("counting", self.client.count, index=self.alias, body=body)["count"])

    def text_search(self, query: str, filters: Filters, limit: int) -> list[Hit]:
        if not query.strip() or not self._indices_of(self.alias):
            return []
        body = {
            "size": limit,
            "_source": {"excludes": ["vector"]},
            "query": {
                "bool": {
                    "should": [
                        {"match": {"text": {"query": query}}},
                        {"match_phrase": {"text.exact": {"query": query, "boost": 2.0}}},
                    ],
                    "minimum_should_match": 1,
                    "filter": query_filters(filters),
                }
            },
            "highlight": {"fields": {"text": {"number_of_fragments": 0}}},
        }
        res = self._call("searching", self.client.search, index=self.alias, body=body)
        hits = []
        for h in res["hits"]["hits"]:
            hl = (h.get("highlight") or {}).get("text")
            hits.append(Hit(h["_id"], float(h["_score"]), h["_source"], hl[0] if hl else None))
        return hits

    def vector_search(self, vector: Sequence[float], filters: Filters, limit: int) -> list[Hit]:
        if not self._indices_of(self.alias):
            return []
        knn: dict = {"vector": [float(x) for x in vector], "k": limit}
        flt = query_filters(filters)
        if flt:
            knn["filter"] = {"bool": {"filter": flt}}
        body = {"size": limit, "_source": {"excludes": ["vector"]}, "query": {"knn": {"vector": knn}}}
        res = self._knn(body, self.alias)
        return [Hit(h["_id"], cosine(h["_score"]), h["_source"]) for h in res["hits"]["hits"]]

    def _knn(self, body: dict, index: str) -> dict:
        from opensearchpy import exceptions as ex

        try:
            return self._call("k-NN searching", self.client.search, index=index, body=body)
        except ex.RequestError as exc:
            if "knn" in str(exc).lower():
                raise VectorSearchUnsupported(f"OpenSearch at {self.url} has no k-NN search: {exc.error}") from None
            raise

    def rebuild(self, batches: Iterable[pl.DataFrame], dim: int) -> tuple[str, int]:
        """Load every document into a new index, then point the alias at it in one call and
        delete the old index: searches see the old index until the new one is complete."""
        old = self._indices_of(self.alias)
        name = self._new_index_name(self.alias)
        self._call("creating the index", self.client.indices.create, index=name, body=chunk_mapping(dim))
        self._call(
            "switching refresh off",
            self.client.indices.put_settings,
            index=name,
            body={"index": {"refresh_interval": "-1"}},
        )
        total = 0
        for docs in batches:
            if docs.height:
                total += self._bulk_plain(docs, name)
        self._call(
            "restoring refresh",
            self.client.indices.put_settings,
            index=name,
            body={"index": {"refresh_interval": "1s"}},
        )
        self._call("refreshing", self.client.indices.refresh, index=name)
        actions = [{"remove": {"index": i, "alias": self.alias}} for i in old] + [
            {"add": {"index": name, "alias": self.alias}}
        ]
        self._call("swapping the alias", self.client.indices.update_aliases, body={"actions": actions})
        for i in old:
            self._call("deleting the old index", self.client.indices.delete, index=i)
        return name, total

    def _bulk_plain(self, docs: pl.DataFrame, index: str) -> int:
        from opensearchpy import helpers

        done, _ = self._call(
            "bulk indexing",
            helpers.bulk,
            self.client,
            self._actions(docs, index),
            chunk_size=BULK_CHUNK,
            max_retries=5,
            initial_backoff=1,
            max_backoff=30,
        )
        return int(done)

    # -- speakers --------------------------------------------------------------------------
    def replace_speakers(self, docs: pl.DataFrame) -> int:
        if docs.is_empty():
            return 0
        index = self._ensure(self.speakers_alias, speaker_mapping(len(docs["vector"][0])))
        actions = (
            {
                "_op_type": "index",
                "_index": index,
                "_id": r["global_speaker_id"],
                "_source": {**r, "vector": [float(x) for x in r["vector"]]},
            }
            for r in docs.iter_rows(named=True)
        )
        done = self._bulk(actions, docs.height, index)
        keep = docs["global_speaker_id"].to_list()
        self._call(
            "deleting retired speakers",
            self.client.delete_by_query,
            index=index,
            body={"query": {"bool": {"must_not": [{"ids": {"values": keep}}]}}},
            refresh=True,
        )
        return done

    def similar_speakers(self, vector: Sequence[float], model: str, limit: int) -> list[Hit]:
        if not self._indices_of(self.speakers_alias):
            return []
        knn = {"vector": [float(x) for x in vector], "k": limit, "filter": {"term": {"model": model}}}
        body = {"size": limit, "_source": {"excludes": ["vector"]}, "query": {"knn": {"vector": knn}}}
        res = self._knn(body, self.speakers_alias)
        return [Hit(h["_id"], cosine(h["_score"]), h["_source"]) for h in res["hits"]["hits"]]

    def speaker_vector(self, global_speaker_id: str) -> tuple[list[float], str] | None:
        from opensearchpy import exceptions as ex

        if not self._indices_of(self.speakers_alias):
            return None
        try:
            doc = self._call("reading a speaker", self.client.get, index=self.speakers_alias, id=global_speaker_id)
        except ex.NotFoundError:
            return None
        return doc["_source"]["vector"], doc["_source"]["model"]

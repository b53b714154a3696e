"""Search over what recordings are about: the ``summaries`` tables (``--in summaries``).

A document per summarized media item: its summary, key points and topics, in its language
and in English. Ranked by BM25 over those words (``text``), or by BM25 fused (reciprocal rank,
as passage search does) with the cosine similarity of the query to the best BM25 candidates'
text under the search text model (``hybrid``: the model embeds the query and at most
``RERANK`` candidates per query, nothing is stored).

The documents are read from the ``summaries`` tables at query time (only their text columns):
one row per media item, so a scan stays fast to some hundred thousand items; past that the
summaries belong in the search backend beside the passages (docs/summaries.md, *Limits*).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..storage import Warehouse
from .ranking import RRF_K, _stem, highlight

RERANK = 50
_TOKEN = re.compile(r"\w+", re.UNICODE)
K1, B = 1.2, 0.75


def tokens(text: str) -> list[str]:
    """Words as BM25 counts them: lower case, the stem the highlighter uses ("libraries" finds "library")."""
    return [_stem(t) for t in _TOKEN.findall(text or "")]


def texts_embedder(model: str, device: str = "cpu") -> Callable[[list[str]], np.ndarray]:
    """Texts -> unit vectors with the search text model, loaded on first use (once per process)."""
    from .embedding import TextEmbedder, resolve_text_model

    holder: dict = {}

    def encode(texts: list[str]) -> np.ndarray:
        if "m" not in holder:
            holder["m"] = TextEmbedder(resolve_text_model(model), device=device).__enter__()
        return holder["m"].encode(texts)

    return encode


@dataclass
class SummaryHit:
    media_id: str
    batch_id: str
    source_uri: str | None
    language: str | None
    summary: str | None
    topics: list[str]
    score: float
    highlighted: str

    def as_json(self) -> dict:
        return {
            "media_id": self.media_id,
            "batch_id": self.batch_id,
            "source_uri": self.source_uri,
            "language": self.language,
            "summary": self.summary,
            "topics": self.topics,
            "score": self.score,
        }


def summary_documents(wh: Warehouse, drop: str | None = None, language: str | None = None) -> pl.DataFrame:
    """``media_id, batch_id, language, summary, topics, document`` of every ok summary."""
    from ..query.core import scan, table_files
    from ..query.quality import drop_batches

    batch_ids = drop_batches(wh, drop) if drop else None
    files = table_files(wh, "summaries", batch_ids)
    cols = ["media_id", "batch_id", "status", "language", "summary", "key_points", "topics"]
    cols += ["summary_en", "key_points_en", "topics_en"]
    rows = scan(wh, files, "summaries").select(cols).filter(pl.col("status") == "ok")
    if language:
        rows = rows.filter(pl.col("language") == language)
    df = rows.collect()
    if df.is_empty():
        return df.with_columns(document=pl.lit("", pl.Utf8))
    points = [
        pl.col(c).list.eval(pl.element().struct.field("text")).list.join(" ").fill_null("")
        for c in ("key_points", "key_points_en")
    ]
    topics = [pl.col(c).list.join(" ; ").fill_null("") for c in ("topics", "topics_en")]
    document = pl.concat_str(
        [pl.col("summary").fill_null(""), *points, *topics, pl.col("summary_en").fill_null("")], separator=" \n "
    )
    media = scan(wh, table_files(wh, "media", batch_ids), "media").select("media_id", "source_uri").collect()
    sources = media.filter(pl.col("media_id").is_not_null()).unique("media_id")
    return df.with_columns(document=document).join(sources, on="media_id", how="left")


def bm25(docs: list[list[str]], query: list[str]) -> np.ndarray:
    n = len(docs)
    if not n or not query:
        return np.zeros(n)
    df = Counter(t for d in docs for t in set(d))
    avg = sum(len(d) for d in docs) / n or 1.0
    scores = np.zeros(n)
    for i, d in enumerate(docs):
        tf = Counter(d)
        for q in set(query):
            if q in tf:
                idf = math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5))
                scores[i] += idf * tf[q] * (K1 + 1) / (tf[q] + K1 * (1 - B + B * len(d) / avg))
    return scores


def search_summaries(
    wh: Warehouse,
    query: str,
    *,
    mode: str = "hybrid",
    embed: Callable[[list[str]], np.ndarray] | None = None,
    drop: str | None = None,
    language: str | None = None,
    limit: int = 10,
) -> tuple[list[SummaryHit], int]:
    """The best ``limit`` summaries for ``query`` and how many were searched. ``embed`` (texts
    -> unit vectors, the search text model) is needed for ``hybrid``."""
    if mode not in ("text", "hybrid"):
        raise ValueError(f"summaries are searched in text or hybrid mode, not {mode!r}")
    docs = summary_documents(wh, drop, language)
    if docs.is_empty():
        return [], 0
    text = docs["document"].to_list()
    scores = bm25([tokens(t) for t in text], tokens(query))
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
    if mode == "hybrid":
        if embed is None:
            raise ValueError("hybrid search of summaries needs the text-embedding model")
        pool = order[:RERANK] if order else list(range(min(RERANK, len(text))))
        sims = embed([text[i] for i in pool]) @ embed([query])[0] if pool else np.zeros(0)
        by_vector = [pool[j] for j in np.argsort(-sims, kind="stable")]
        fused: dict[int, float] = {}
        for ranking in (order[:RERANK], by_vector):
            for rank, i in enumerate(ranking):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        order = sorted(fused, key=lambda i: -fused[i])
        final = fused
    else:
        final = {i: float(scores[i]) for i in order}
    hits = []
    for i in order[:limit]:
        row = docs.row(i, named=True)
        shown = row["summary"] or row["summary_en"] or ""
        hits.append(
            SummaryHit(
                media_id=row["media_id"],
                batch_id=row["batch_id"],
                source_uri=row.get("source_uri"),
                language=row["language"],
                summary=shown,
                topics=list(row["topics_en"] or row["topics"] or []),
                score=round(float(final[i]), 6),
                highlighted=highlight(shown, query),
            )
        )
    return hits, docs.height

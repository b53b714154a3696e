"""Hybrid ranking in the client: reciprocal rank fusion of BM25 and vector results.

RRF (Cormack, Clarke, Buettcher 2009) scores a document ``sum(1 / (k + rank))`` over the
lists it appears in; it needs no score normalisation, so it fuses BM25 scores and cosine
similarities as they come, from any backend, with no search-side ML plugin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .backends import Hit

RRF_K = 60


def reciprocal_rank_fusion(lists: dict[str, Sequence[Hit]], limit: int, k: int = RRF_K) -> list[Hit]:
    fused: dict[str, Hit] = {}
    for name, hits in lists.items():
        for rank, hit in enumerate(hits, start=1):
            out = fused.get(hit.id)
            if out is None:
                out = fused[hit.id] = Hit(hit.id, 0.0, hit.doc, hit.highlight)
            out.score += 1.0 / (k + rank)
            out.ranks[name] = rank
            if out.highlight is None and hit.highlight is not None:
                out.highlight = hit.highlight
    return sorted(fused.values(), key=lambda h: (-h.score, h.id))[:limit]


_TOKEN = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)


def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def highlight(text: str, query: str) -> str:
    """``text`` with ``<em>…</em>`` around the words that share a stem with a query word
    (what OpenSearch's highlighter does; the embedded backend has none)."""
    stems = {_stem(t) for t in _TOKEN.findall(query) if t.lower() not in STOP_WORDS}
    if not stems:
        return text
    out, last = [], 0
    for m in _TOKEN.finditer(text):
        out.append(text[last : m.start()])
        word = m.group(0)
        out.append(f"<em>{word}</em>" if _stem(word) in stems else word)
        last = m.end()
    out.append(text[last:])
    return "".join(out)

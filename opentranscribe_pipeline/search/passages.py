"""Judging search passages by the quality of their audio (``--min-quality``).

Split out of :mod:`.service`, which re-exports :class:`PassageJudge` and :func:`judge_passages`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..storage import Warehouse


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

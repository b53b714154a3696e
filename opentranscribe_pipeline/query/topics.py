"""Using the summary tables: topics across the archive, and one media item's summary.

Reads what the summary step writes (``summaries``: one row per media item, ``topics``: one
row per media item, language and topic). Dagster-free, reading only the files a lookup names:

- :func:`topic_ranking`: the topics of the archive (or of one drop's batches), ranked by the
  number of media items they are a topic of, then by their summed weight. English topics by
  default (from ``segments_en``): they are comparable across the archive's languages.
- :func:`media_summary`: one media item's summary row as a dict (the review app's page);
  ``None`` where the item has none (not summarized yet, or unknown).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from ..storage import Warehouse
from ..storage.media_index import MediaIndex
from .core import NoMatch, scan, table_files
from .quality import drop_batches

SUMMARY_COLUMNS = (
    "media_id",
    "batch_id",
    "status",
    "error",
    "language",
    "summary",
    "key_points",
    "topics",
    "summary_en",
    "key_points_en",
    "topics_en",
    "method",
    "model",
    "prompt_version",
    "processed_at",
)


def topic_ranking(
    wh: Warehouse, *, drop: str | None = None, language: str | None = "en", top: int | None = None
) -> pl.DataFrame:
    """``topic, files, score, mean_weight``: most files first (``score`` = summed weight).
    ``language``: only topics in it (``en``: the English ones, every file has them); None: all."""
    batch_ids = drop_batches(wh, drop) if drop else None
    files = table_files(wh, "topics", batch_ids)
    if not files:
        raise NoMatch(
            f"no topics in {wh.root_uri}{f' for drop {drop!r}' if drop else ''}: the summarize step has not run",
            pl.DataFrame({"table": ["topics"]}),
        )
    topics = scan(wh, files, "topics")
    if language:
        topics = topics.filter(pl.col("language") == language)
    ranked = (
        topics.group_by("topic")
        .agg(
            files=pl.col("media_id").n_unique(),
            score=pl.col("weight").sum().round(4),
            mean_weight=pl.col("weight").mean().round(4),
        )
        .sort(["files", "score", "topic"], descending=[True, True, False])
        .collect()
    )
    return ranked.head(top) if top else ranked


def media_summary(root: Warehouse | str, media_id: str) -> dict | None:
    """The ``summaries`` row of ``media_id`` (a full id) with ``source_uri``: summary, key points
    (``text, start_s, end_s, speaker``: the file-local label), topics, the same in English, the
    method, model and prompt version, and the status (``failed``/``skipped`` rows say why in
    ``error``). One media-index GET and one ``summaries`` file where the index knows the item;
    otherwise a scan of the ``summaries`` tables' ``media_id`` column. ``None``: no row."""
    wh = root if isinstance(root, Warehouse) else Warehouse(str(root))
    media_id = media_id.strip().lower()
    held = MediaIndex(wh).lookup(media_id)
    files = table_files(wh, "summaries", [held.batch_id] if held is not None else None)
    if not files:
        return None
    rows = scan(wh, files, "summaries").filter(pl.col("media_id") == media_id).select(SUMMARY_COLUMNS).collect()
    if rows.is_empty():
        return None
    out = rows.sort("processed_at", descending=True).row(0, named=True)
    out["source_uri"] = held.source_uri if held is not None else None
    if isinstance(out.get("processed_at"), datetime):
        out["processed_at"] = out["processed_at"].isoformat()
    return out

"""Reading ``file_issues``: what a CPU stage held back for one file, and why.

The table is written by the stages through ``assets/isolation.py`` (one part per stage,
``file_issues/batch_id=<id>/<stage>.parquet``); this Dagster-free reader serves the query
layer, the CLI and the assets alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from ..schemas import FileIssues, conform

ISSUES_TABLE = "file_issues"


def issues_path(wh, batch_id: str, stage: str) -> str:
    return wh.path(ISSUES_TABLE, f"batch_id={batch_id}", f"{stage}.parquet")


def read_issues(wh, batch_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """Every stage's issues of the batches (all batches when None)."""
    parts = []
    for batch_id in batch_ids if batch_ids is not None else wh.batch_ids(ISSUES_TABLE):
        d = wh.path(ISSUES_TABLE, f"batch_id={batch_id}")
        for path in sorted(wh.files_under(d)):
            if path.endswith(".parquet"):
                df = wh.read_parquet(path)
                if df is not None and df.height:
                    parts.append(conform(df, FileIssues))
    return pl.concat(parts) if parts else conform(pl.DataFrame(), FileIssues).clear()

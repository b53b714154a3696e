"""The state of the whole archive, per drop and in total: what the dashboard asset shows.

Reads a few columns of the small per-media tables only (``batches``: batch -> drop;
``media``: status, duration; ``transcripts``: language, elapsed; ``diarization``:
elapsed; ``speaker_embeddings``: one row per local speaker, ``batch_id`` only) plus the
speaker state's compact tables, so the cost grows with the number of media items, never
with words or segments. Dagster-free, like the rest of :mod:`..query`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..speakers import state as speaker_state
from ..storage import Warehouse
from .core import scan, table_files

SLOWEST = 5  # batches listed as the slowest


@dataclass
class ArchiveSummary:
    per_drop: pl.DataFrame  # one row per drop (see DROP_COLUMNS)
    totals: dict  # the same counts for the whole archive, plus global / named speakers
    slowest: pl.DataFrame  # batch_id, drop, audio_h, elapsed_s, realtime_factor
    # batch_id, drop, files, failed, skipped, held_back, missing, first_error: batches with failed
    # files, or with files some stage held back (``file_issues``) or failed (model steps)
    failing: pl.DataFrame
    languages: pl.DataFrame  # language, n_media, audio_h


DROP_COLUMNS = (
    "drop",
    "batches",
    "files",
    "ok",
    "failed",
    "skipped",
    "audio_h",
    "languages",
    "local_speakers",
    "global_speakers",
    "failing_batches",
)


def _columns(wh: Warehouse, table: str, columns: list[str]) -> pl.DataFrame:
    return scan(wh, table_files(wh, table), table).select(columns).collect()


def _missing_per_batch(wh: Warehouse, transcripts: pl.DataFrame) -> pl.DataFrame:
    """Per batch: how many ok files miss some output (a stage held them back, or transcription
    failed for them) and which stages: ``batch_id, held_back, missing``."""
    from ..assets.isolation import read_issues

    issues = read_issues(wh).select("batch_id", "media_id", "stage")
    failed_tx = transcripts.filter(pl.col("status") == "failed")
    if failed_tx.height and "media_id" in failed_tx.columns:
        issues = pl.concat([issues, failed_tx.select("batch_id", "media_id", stage=pl.lit("transcription"))])
    return issues.group_by("batch_id").agg(
        held_back=pl.col("media_id").n_unique(),
        missing=pl.col("stage").unique().sort().str.join(", "),
    )


def archive_summary(wh: Warehouse) -> ArchiveSummary:
    batches = _columns(wh, "batches", ["batch_id", "drop"]).unique("batch_id")
    media = _columns(wh, "media", ["batch_id", "status", "duration_s", "error"])
    transcripts = _columns(wh, "transcripts", ["batch_id", "media_id", "status", "language", "audio_s", "elapsed_s"])
    diarization = _columns(wh, "diarization", ["batch_id", "elapsed_s"])
    local = _columns(wh, "speaker_embeddings", ["batch_id"])
    clusters = speaker_state.read_clusters(wh)
    active, _retired = speaker_state.active_speakers(wh)

    def with_drop(df: pl.DataFrame) -> pl.DataFrame:
        return df.join(batches, on="batch_id", how="left").with_columns(pl.col("drop").fill_null("(unregistered)"))

    media = with_drop(media)
    per_batch = (
        media.group_by("batch_id", "drop")
        .agg(
            files=pl.len(),
            ok=(pl.col("status") == "ok").sum(),
            failed=(pl.col("status") == "failed").sum(),
            skipped=(pl.col("status") == "skipped").sum(),
            first_error=pl.col("error").filter(pl.col("status") == "failed").first(),
        )
        .sort("batch_id")
    )
    per_batch = per_batch.join(_missing_per_batch(wh, transcripts), on="batch_id", how="left").with_columns(
        pl.col("held_back").fill_null(0).cast(pl.Int64), pl.col("missing").fill_null("")
    )
    ok_transcripts = with_drop(transcripts.filter(pl.col("status") == "ok"))
    per_drop = (
        per_batch.group_by("drop")
        .agg(
            batches=pl.len(),
            files=pl.col("files").sum(),
            ok=pl.col("ok").sum(),
            failed=pl.col("failed").sum(),
            skipped=pl.col("skipped").sum(),
            failing_batches=(pl.col("failed") > 0).sum(),
        )
        .join(
            ok_transcripts.group_by("drop").agg(
                audio_h=pl.col("audio_s").sum() / 3600, languages=pl.col("language").drop_nulls().n_unique()
            ),
            on="drop",
            how="left",
        )
        .join(with_drop(local).group_by("drop").agg(local_speakers=pl.len()), on="drop", how="left")
        .join(
            with_drop(clusters.select("batch_id", "global_speaker_id"))
            .group_by("drop")
            .agg(global_speakers=pl.col("global_speaker_id").n_unique()),
            on="drop",
            how="left",
        )
        .with_columns(
            pl.col("audio_h").fill_null(0.0),
            pl.col("languages", "local_speakers", "global_speakers").fill_null(0).cast(pl.Int64),
        )
        .select(DROP_COLUMNS)
        .sort("drop")
    )
    elapsed = (
        pl.concat([transcripts.select("batch_id", "elapsed_s"), diarization.select("batch_id", "elapsed_s")])
        .group_by("batch_id")
        .agg(elapsed_s=pl.col("elapsed_s").sum())
    )
    audio = ok_transcripts.group_by("batch_id").agg(audio_h=pl.col("audio_s").sum() / 3600)
    slowest = (
        with_drop(elapsed)
        .join(audio, on="batch_id", how="left")
        .with_columns(pl.col("audio_h").fill_null(0.0))
        .with_columns(
            realtime_factor=pl.when(pl.col("audio_h") > 0)
            .then(pl.col("elapsed_s") / (pl.col("audio_h") * 3600))
            .otherwise(None)
        )
        .sort("elapsed_s", descending=True)
        .head(SLOWEST)
        .select("batch_id", "drop", "audio_h", "elapsed_s", "realtime_factor")
    )
    failing = per_batch.filter((pl.col("failed") > 0) | (pl.col("held_back") > 0)).select(
        "batch_id", "drop", "files", "failed", "skipped", "held_back", "missing", "first_error"
    )
    languages = (
        ok_transcripts.group_by("language")
        .agg(n_media=pl.len(), audio_h=pl.col("audio_s").sum() / 3600)
        .sort(["n_media", "language"], descending=[True, False], nulls_last=True)
    )
    named = active.filter(pl.col("name").is_not_null()).height if "name" in active.columns else 0
    totals = {
        "drops": per_drop.height,
        "batches": per_batch.height,
        "files": int(per_drop["files"].sum() or 0),
        "ok": int(per_drop["ok"].sum() or 0),
        "failed": int(per_drop["failed"].sum() or 0),
        "skipped": int(per_drop["skipped"].sum() or 0),
        "audio_h": float(ok_transcripts["audio_s"].sum() or 0) / 3600,
        "languages": int(ok_transcripts["language"].drop_nulls().n_unique()),
        "local_speakers": local.height,
        "global_speakers": active.height,
        "named_speakers": named,
        "failing_batches": failing.height,
    }
    return ArchiveSummary(per_drop, totals, slowest, failing, languages)

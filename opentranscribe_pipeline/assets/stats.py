"""``speaker_stats`` + ``media_stats``: conversation analytics per batch (CPU, whole batch).

Recomputed from ``speaker_turns``, ``words`` and ``segments`` each time (milliseconds per
hour of audio); the definitions are in ``deliver/stats.py``. Every ok media item gets a
``media_stats`` row (a silent file: no speech; diarization failed: ``diarized`` false, no
speaker rows); every local speaker of a diarized file a ``speaker_stats`` row.
"""

import dagster as dg
import polars as pl

from ..deliver.stats import Span, conversation_stats
from ..partitions import batch_partitions
from ..resources import WarehouseResource
from ..schemas import MediaStats, SpeakerStats, conform
from .checks import schema_check_result, schema_check_spec, table_spec
from .isolation import (
    Issue,
    hold_back_files,
    issues_check_result,
    issues_check_spec,
    per_file,
    record_issues,
)
from .modelstep import empty


def _read(wh, table: str, batch_id: str) -> pl.DataFrame:
    df = wh.read_table(table, batch_id)
    return df if df is not None else pl.DataFrame()


def _by_media(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    if not df.height:
        return {}
    return {k[0]: v for k, v in df.partition_by("media_id", as_dict=True).items()}


STAGE = "conversation_analytics"


def batch_stats(
    batch_id: str, media, audio, turns, words, segments, diarization
) -> tuple[pl.DataFrame, pl.DataFrame, list[Issue]]:
    """``speaker_stats`` and ``media_stats`` of a batch from its tables (plain frames), and the
    issues of the files held back: a file whose statistics raise, or whose rows break a table's
    rules, has no rows in either table (``assets/isolation.py``); the other files are unaffected."""
    ok = media.filter(pl.col("status") == "ok").select("media_id", "duration_s") if media.height else media
    if audio.height:  # the decoded duration where there is one
        ok = ok.join(
            audio.select("media_id", pl.col("duration_s").alias("audio_duration_s")), on="media_id", how="left"
        )
        ok = ok.with_columns(duration_s=pl.coalesce("audio_duration_s", "duration_s")).drop("audio_duration_s")
    diarized = set(diarization.filter(pl.col("status") == "ok")["media_id"].to_list()) if diarization.height else set()
    turns_of, words_of, segs_of = _by_media(turns), _by_media(words), _by_media(segments)

    def one_file(media_id: str, duration) -> tuple[list[dict], dict]:
        t = turns_of.get(media_id)
        w = words_of.get(media_id)
        s = segs_of.get(media_id)
        spans = [Span(*r) for r in t.select("start_s", "end_s", "speaker").rows()] if t is not None else []
        per_speaker, med = conversation_stats(
            float(duration or 0.0),
            spans,
            w["speaker"].to_list() if w is not None else [],
            s.select("speaker", "text").rows() if s is not None else [],
            w.select("start_s", "end_s").rows() if w is not None else [],
            diarized=media_id in diarized,
        )
        speaker_rows = [{"batch_id": batch_id, "media_id": media_id, **st.__dict__} for st in per_speaker]
        return speaker_rows, {
            "batch_id": batch_id,
            "media_id": media_id,
            "duration_s": float(duration or 0.0),
            **med.__dict__,
        }

    items = ok.unique("media_id").sort("media_id").select("media_id", "duration_s").rows()
    results, issues = per_file(STAGE, items, one_file)
    speaker_rows = [row for rows, _ in results.values() for row in rows]
    media_rows = [m for _, m in results.values()]
    speakers = conform(pl.DataFrame(speaker_rows), SpeakerStats) if speaker_rows else empty(SpeakerStats)
    medias = conform(pl.DataFrame(media_rows), MediaStats) if media_rows else empty(MediaStats)
    (speakers, medias), issues = hold_back_files(STAGE, issues, speaker_stats=speakers, media_stats=medias)
    return speakers.sort("media_id", "speaker"), medias.sort("media_id"), issues


def _spec(table: str, description: str) -> dg.AssetSpec:
    return table_spec(
        table,
        description,
        group="analytics",
        deps=["speaker_turns", "words", "segments", "diarization", "media", "audio"],
    )


@dg.multi_asset(
    specs=[
        _spec(
            "speaker_stats",
            "Per media item and local speaker: talk time, share, turns, pace, questions, interruptions.",
        ),
        _spec("media_stats", "Per media item: speech, silence, overlap, speakers, switches, pace."),
    ],
    check_specs=[
        schema_check_spec("speaker_stats"),
        schema_check_spec("media_stats"),
        issues_check_spec(STAGE, "speaker_stats"),
    ],
    partitions_def=batch_partitions,
)
def conversation_analytics(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Who spoke how much, how fast, how often they were interrupted (CPU only, whole batch)."""
    batch_id = context.partition_key
    wh = warehouse.get()
    media = _read(wh, "media", batch_id)
    if not media.height:
        raise dg.Failure(f"batch {batch_id!r} has no media table yet; materialize `media` first")
    speakers, medias, issues = batch_stats(
        batch_id,
        media,
        _read(wh, "audio", batch_id),
        _read(wh, "speaker_turns", batch_id),
        _read(wh, "words", batch_id),
        _read(wh, "segments", batch_id),
        _read(wh, "diarization", batch_id),
    )
    wh.write_table("speaker_stats", speakers, batch_id)
    wh.write_table("media_stats", medias, batch_id)
    held = record_issues(context, wh, batch_id, STAGE, issues, media)
    speech_h = float(medias["speech_s"].sum() or 0) / 3600
    yield dg.MaterializeResult(asset_key="speaker_stats", metadata={"dagster/row_count": speakers.height})
    yield dg.MaterializeResult(
        asset_key="media_stats",
        metadata={
            "dagster/row_count": medias.height,
            "speech_hours": round(speech_h, 4),
            "overlap_s": round(float(medias["overlap_s"].sum() or 0), 2),
            "files_without_diarization": medias.filter(~pl.col("diarized")).height,
            "files_held_back": held["media_id"].n_unique(),
        },
    )
    yield schema_check_result("speaker_stats", speakers)
    yield schema_check_result("media_stats", medias)
    yield issues_check_result(STAGE, "speaker_stats", held)

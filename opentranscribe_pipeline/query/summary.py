"""The state of the whole archive, per drop and in total: what the dashboard asset shows.

Reads a few columns of the small per-media tables only (``batches``: batch -> drop;
``media``: status, duration; ``transcripts``: language, elapsed; ``diarization``:
elapsed; ``speaker_embeddings``: one row per local speaker, ``batch_id`` only;
``media_quality``: speech, speech at or above the quality floor, flag counts) plus the
speaker state's compact tables, so the cost grows with the number of media items, never
with words or segments. Dagster-free, like the rest of :mod:`..query`.

Yield (``yield_per_drop``, and the ``*_h`` / ``files_*scored`` totals): hours in (ok media),
hours of speech and hours of speech at or above the quality floor (``media_quality``: each
file counted against the floor recorded on its row), and the most common flags. A file with
no ``ok`` row in ``media_quality`` (a batch processed before the quality step existed, or a
file the step failed on) is *not scored*: it is counted in ``not_scored_files`` and
``not_scored_h`` and never as zero hours of speech; a drop with no scored file has null
speech and kept hours, not 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from ..speakers import state as speaker_state
from ..storage import Warehouse
from .core import scan, table_files

SLOWEST = 5  # batches listed as the slowest
TOP_FLAGS = 3  # flags named per drop in ``top_flags``


@dataclass
class ArchiveSummary:
    per_drop: pl.DataFrame  # one row per drop (see DROP_COLUMNS)
    totals: dict  # the same counts for the whole archive, plus global / named speakers
    slowest: pl.DataFrame  # batch_id, drop, audio_h, elapsed_s, realtime_factor
    # batch_id, drop, files, failed, skipped, held_back, missing, first_error: batches with failed
    # files, or with files some stage held back (``file_issues``) or failed (model steps)
    failing: pl.DataFrame
    languages: pl.DataFrame  # language, n_media, audio_h
    yield_per_drop: pl.DataFrame = field(default_factory=lambda: _empty_yield())  # YIELD_COLUMNS
    flag_counts: dict = field(default_factory=dict)  # flag -> segments (segment flags) or files (media-level)


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


YIELD_COLUMNS = (
    "drop",
    "hours_in",  # ok media items, their whole duration
    "scored_files",  # with an ok media_quality row
    "not_scored_files",  # ok media items without one: never counted as 0 h of speech
    "not_scored_h",
    "speech_h",  # of the scored files; null when none is scored
    "above_floor_h",  # of that speech, at or above the quality floor; null when none is scored
    "above_floor_share",  # above_floor_h / speech_h; null when there is no scored speech
    "top_flags",  # e.g. "noisy 12 segments, telephone_band 1 file"
)
SEGMENT_FLAG_COUNTS = {
    "repetition": "n_repetition",
    "low_confidence": "n_low_confidence",
    "speech_mismatch": "n_speech_mismatch",
    "noisy": "n_noisy",
    "clipped": "n_clipped",
}
MEDIA_QUALITY_COLUMNS = ["batch_id", "media_id", "status", "speech_s", "speech_above_floor_s", "quality_floor", "flags"]


def _empty_yield() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "drop": pl.Utf8,
            "hours_in": pl.Float64,
            "scored_files": pl.Int64,
            "not_scored_files": pl.Int64,
            "not_scored_h": pl.Float64,
            "speech_h": pl.Float64,
            "above_floor_h": pl.Float64,
            "above_floor_share": pl.Float64,
            "top_flags": pl.Utf8,
        }
    )


def _flag_counts(quality: pl.DataFrame) -> Counter:
    """Segment flags counted in segments (the ``n_*`` columns), media-level flags in files;
    the same name in both (``clipped``) is kept apart as ``clipped (file)``."""
    counts: Counter = Counter()
    for flag, column in SEGMENT_FLAG_COUNTS.items():
        n = int(quality[column].sum() or 0) if column in quality.columns and quality.height else 0
        if n:
            counts[flag] = n
    if quality.height:
        for flag in quality["flags"].explode().drop_nulls().to_list():
            counts[f"{flag} (file)" if flag in SEGMENT_FLAG_COUNTS else flag] += 1
    return counts


def describe_flags(counts: Counter, top: int = TOP_FLAGS) -> str:
    """``"noisy 12 segments, telephone_band 1 file"``: the ``top`` most common, most first."""
    out = []
    for flag, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        unit = "segment" if flag in SEGMENT_FLAG_COUNTS else "file"
        out.append(f"{flag.removesuffix(' (file)')} {n} {unit}{'' if n == 1 else 's'}")
    return ", ".join(out)


def quality_yield(media: pl.DataFrame, quality: pl.DataFrame) -> tuple[pl.DataFrame, dict, Counter]:
    """Yield per drop and in total from ``media`` (``drop, batch_id, media_id, status,
    duration_s``) and ``media_quality`` (MEDIA_QUALITY_COLUMNS plus the ``n_*`` flag counts,
    with ``drop``): see the module's docstring."""
    ok = media.filter(pl.col("status") == "ok").unique(["batch_id", "media_id"])
    scored_rows = quality.filter(pl.col("status") == "ok").unique(["batch_id", "media_id"], keep="last")
    files = ok.join(
        scored_rows.drop("drop", strict=False), on=["batch_id", "media_id"], how="left", suffix="_q"
    ).with_columns(scored=pl.col("status_q").is_not_null())
    per_drop = (
        files.group_by("drop")
        .agg(
            hours_in=pl.col("duration_s").sum() / 3600,
            scored_files=pl.col("scored").sum().cast(pl.Int64),
            not_scored_files=(~pl.col("scored")).sum().cast(pl.Int64),
            not_scored_h=pl.col("duration_s").filter(~pl.col("scored")).sum() / 3600,
            speech_s=pl.col("speech_s").filter(pl.col("scored")).sum(),
            above_s=pl.col("speech_above_floor_s").filter(pl.col("scored")).sum(),
        )
        .with_columns(
            speech_h=pl.when(pl.col("scored_files") > 0).then(pl.col("speech_s") / 3600),
            above_floor_h=pl.when(pl.col("scored_files") > 0).then(pl.col("above_s") / 3600),
            above_floor_share=pl.when((pl.col("scored_files") > 0) & (pl.col("speech_s") > 0)).then(
                pl.col("above_s") / pl.col("speech_s")
            ),
        )
        .sort("drop")
    )
    # the flags of the scored files of ok media items (a row of a file no longer ok is not counted)
    counted = scored_rows.join(files.filter(pl.col("scored")), on=["batch_id", "media_id"], how="semi")
    tops = {d: describe_flags(_flag_counts(counted.filter(pl.col("drop") == d))) for d in per_drop["drop"].to_list()}
    per_drop = per_drop.with_columns(
        top_flags=pl.col("drop").replace_strict(tops, default="", return_dtype=pl.Utf8)
    ).select(YIELD_COLUMNS)
    per_drop = pl.concat([_empty_yield(), per_drop.cast(_empty_yield().schema)]) if per_drop.height else _empty_yield()
    n_scored = int(files["scored"].sum() or 0)
    speech_s = float(files.filter(pl.col("scored"))["speech_s"].sum() or 0)
    above_s = float(files.filter(pl.col("scored"))["speech_above_floor_s"].sum() or 0)
    all_counts = _flag_counts(counted)
    totals = {
        "hours_in": float(files["duration_s"].sum() or 0) / 3600,
        "scored_files": n_scored,
        "not_scored_files": files.height - n_scored,
        "not_scored_h": float(files.filter(~pl.col("scored"))["duration_s"].sum() or 0) / 3600,
        "speech_h": speech_s / 3600 if n_scored else None,
        "above_floor_h": above_s / 3600 if n_scored else None,
        "above_floor_share": above_s / speech_s if n_scored and speech_s > 0 else None,
        "quality_floors": sorted(set(files.filter(pl.col("scored"))["quality_floor"].drop_nulls().to_list())),
        "top_flags": describe_flags(all_counts),
    }
    return per_drop, totals, all_counts


def yield_lines(s: ArchiveSummary) -> list[str]:
    """The yield as lines for a terminal (``opentranscribe show``): one per drop, then the total."""
    t = s.totals

    def line(name, hours_in, speech, above, share, scored, not_scored, not_scored_h, flags) -> str:
        if speech is None:
            return f"{name}: {hours_in:.3f} h in; not scored ({not_scored} file(s))"
        text = f"{name}: {hours_in:.3f} h in, {speech:.3f} h of speech, {above:.3f} h at/above the floor"
        if share is not None:
            text += f" ({share:.0%})"
        text += f"; {scored} file(s) scored"
        if not_scored:
            text += f", {not_scored} not scored ({not_scored_h:.3f} h)"
        if flags:
            text += f"; most flagged: {flags}"
        return text

    floors = t.get("quality_floors") or []
    head = "yield" + (f" (DNSMOS ovrl floor {', '.join(f'{f:g}' for f in floors)})" if floors else "")
    out = [head]
    for r in s.yield_per_drop.iter_rows(named=True):
        out.append(
            "  "
            + line(
                r["drop"],
                r["hours_in"],
                r["speech_h"],
                r["above_floor_h"],
                r["above_floor_share"],
                r["scored_files"],
                r["not_scored_files"],
                r["not_scored_h"],
                r["top_flags"],
            )
        )
    out.append(
        "  "
        + line(
            "total",
            t["hours_in"],
            t["speech_h"],
            t["above_floor_h"],
            t["above_floor_share"],
            t["scored_files"],
            t["not_scored_files"],
            t["not_scored_h"],
            t["top_flags"],
        )
    )
    return out


def status_counts() -> dict[str, pl.Expr]:
    """``files, ok, failed, skipped`` of ``media`` rows: what the dashboard counts per batch and
    drop, and ``opentranscribe process`` for the batches it handled (:func:`batches_summary`)."""
    return {
        "files": pl.len(),
        "ok": (pl.col("status") == "ok").sum(),
        "failed": (pl.col("status") == "failed").sum(),
        "skipped": (pl.col("status") == "skipped").sum(),
    }


def _readable(wh: Warehouse, table: str, batch_ids: list[str], unreadable: list) -> list[pl.DataFrame]:
    """The batches' parts of ``table`` that exist and can be read; the others' errors go to
    ``unreadable`` (a summary shows what it can)."""
    from ..storage import CorruptTable

    frames = []
    for b in batch_ids:
        try:
            df = wh.read_table(table, b)
        except CorruptTable as exc:
            unreadable.append(exc)
            continue
        if df is not None:
            frames.append(df)
    return frames


def _global_speakers(wh: Warehouse, batch_ids: list[str], unreadable: list) -> int:
    from ..storage import CorruptTable

    try:
        return speaker_state.read_clusters(wh, batch_ids)["global_speaker_id"].n_unique()
    except CorruptTable as exc:
        unreadable.append(exc)
        return 0


def batches_summary(wh: Warehouse, batch_ids: list[str]) -> dict:
    """The dashboard's counts for some batches only (what ``opentranscribe process`` prints
    for the batches it handled), with their words and segments: files, ok, failed, skipped
    (:func:`status_counts`), transcripts_failed, audio_s, words, segments (ok transcripts),
    local_speakers, global_speakers, the media rows that are not ok (``problems``) and the
    parts that could not be read (``unreadable``; the rest is counted)."""
    unreadable: list = []
    media = _readable(wh, "media", batch_ids, unreadable)
    state = _readable(wh, "transcripts", batch_ids, unreadable)
    media_df = pl.concat(media, how="vertical_relaxed") if media else None
    state_df = pl.concat(state, how="vertical_relaxed") if state else None
    counts = media_df.select(**status_counts()).row(0, named=True) if media_df is not None else {}
    ok_state = state_df.filter(pl.col("status") == "ok") if state_df is not None else None
    return {
        "files": counts.get("files", 0),
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "transcripts_failed": state_df.filter(pl.col("status") == "failed").height if state_df is not None else 0,
        "audio_s": float(ok_state["audio_s"].sum()) if ok_state is not None else 0.0,
        "words": int(ok_state["n_words"].sum()) if ok_state is not None else 0,
        "segments": int(ok_state["n_segments"].sum()) if ok_state is not None else 0,
        "local_speakers": sum(df.height for df in _readable(wh, "speaker_embeddings", batch_ids, unreadable)),
        "global_speakers": _global_speakers(wh, batch_ids, unreadable),
        "unreadable": unreadable,
        "problems": (
            media_df.filter(pl.col("status") != "ok").select("source_uri", "status", "error").rows()
            if media_df is not None
            else []
        ),
    }


def _columns(wh: Warehouse, table: str, columns: list[str]) -> pl.DataFrame:
    return scan(wh, table_files(wh, table), table).select(columns).collect()


def _missing_per_batch(wh: Warehouse, transcripts: pl.DataFrame) -> pl.DataFrame:
    """Per batch: how many ok files miss some output (a stage held them back, or transcription
    failed for them) and which stages: ``batch_id, held_back, missing``."""
    from .issues import read_issues

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
    media = _columns(wh, "media", ["batch_id", "media_id", "status", "duration_s", "error"])
    quality = _columns(wh, "media_quality", MEDIA_QUALITY_COLUMNS + list(SEGMENT_FLAG_COUNTS.values()))
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
            **status_counts(),
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
    yield_per_drop, yield_totals, flag_counts = quality_yield(media, with_drop(quality))
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
        **yield_totals,
    }
    return ArchiveSummary(per_drop, totals, slowest, failing, languages, yield_per_drop, dict(flag_counts))

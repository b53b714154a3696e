"""Controlled ``segment_quality`` / ``media_quality`` rows for the tests of what uses them
(``query quality``, ``--min-quality``, yield): scores chosen by the test on a warehouse's real
segments, written through the contract (``schemas.conform`` + validation), so the filtering
logic is tested against known values. The tables the quality step itself writes are tested
in the tests of that step, and over the shared archive where it runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

from opentranscribe_pipeline.schemas import MediaQuality, SegmentQuality, conform
from opentranscribe_pipeline.storage import Warehouse

FLOOR = 3.0


def segment_rows(segments: pl.DataFrame, score: Callable[[dict], tuple[float | None, list[str]]]) -> pl.DataFrame:
    """One ``segment_quality`` row per segment: ``score(segment) -> (ovrl or None, flags)``."""
    rows = []
    for s in segments.iter_rows(named=True):
        ovrl, flags = score(s)
        rows.append(
            {
                **{k: s[k] for k in ("batch_id", "media_id", "segment_id", "start_s", "end_s", "speaker")},
                "dnsmos_sig": None if ovrl is None else min(5.0, ovrl + 0.3),
                "dnsmos_bak": None if ovrl is None else min(5.0, ovrl + 0.5),
                "dnsmos_ovrl": ovrl,
                "dnsmos_note": "shorter than the DNSMOS window" if ovrl is None else None,
                "avg_logprob": s.get("avg_logprob"),
                "no_speech_prob": 0.01,
                "compression_ratio": 1.2,
                "words_per_s": 2.5,
                "flags": flags,
                "flag_reasons": [f"{f}: set by the test" for f in flags],
            }
        )
    df = pl.DataFrame(rows, schema_overrides={"flags": pl.List(pl.Utf8), "flag_reasons": pl.List(pl.Utf8)})
    return SegmentQuality.validate(conform(df, SegmentQuality))


def media_rows(
    seg_quality: pl.DataFrame, media: pl.DataFrame, floor: float = FLOOR, media_flags: dict | None = None
) -> pl.DataFrame:
    """``media_quality`` rows agreeing with ``seg_quality``: speech = the segments' time,
    above the floor = the time of those scored at or above ``floor``."""
    media_flags = media_flags or {}
    dur = pl.col("end_s") - pl.col("start_s")
    per = seg_quality.group_by("batch_id", "media_id").agg(
        speech_s=dur.sum(),
        speech_above_floor_s=dur.filter(pl.col("dnsmos_ovrl") >= floor).sum(),
        dnsmos_ovrl_mean=(pl.col("dnsmos_ovrl") * dur).sum() / dur.filter(pl.col("dnsmos_ovrl").is_not_null()).sum(),
        dnsmos_ovrl_p10=pl.col("dnsmos_ovrl").quantile(0.1),
        n_segments=pl.len().cast(pl.Int64),
        **{
            f"n_{f}": pl.col("flags").list.contains(f).sum().cast(pl.Int64)
            for f in ("repetition", "low_confidence", "speech_mismatch", "noisy", "clipped")
        },
    )
    out = (
        per.join(media.select("media_id", "duration_s").unique("media_id"), on="media_id", how="left")
        .with_columns(
            status=pl.lit("ok"),
            quality_floor=pl.lit(floor),
            speech_share=(pl.col("speech_s") / pl.col("duration_s")).clip(0, 1),
            flags=pl.col("media_id").replace_strict(media_flags, default=[], return_dtype=pl.List(pl.Utf8)),
            audio_s=pl.col("duration_s"),
            elapsed_s=pl.lit(0.5),
            untranscribed_speech_s=pl.lit(0.0),
            model=pl.lit("test-set scores"),
            model_version=pl.lit("test/1"),
            processed_at=pl.lit(dt.datetime.now(dt.UTC)),
        )
        .with_columns(pl.col("dnsmos_ovrl_mean", "dnsmos_ovrl_p10").clip(1, 5))
    )
    return MediaQuality.validate(conform(out, MediaQuality))


def write_quality(
    wh: Warehouse,
    batch_id: str,
    score: Callable[[dict], tuple[float | None, list[str]]],
    *,
    media_ids: set[str] | None = None,
    floor: float = FLOOR,
    media_flags: dict | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score the batch's segments (of ``media_ids``, else all) and write both tables."""
    segments = wh.read_table("segments", batch_id)
    if media_ids is not None:
        segments = segments.filter(pl.col("media_id").is_in(sorted(media_ids)))
    sq = segment_rows(segments, score)
    mq = media_rows(sq, wh.read_table("media", batch_id), floor, media_flags)
    wh.write_table("segment_quality", sq, batch_id)
    wh.write_table("media_quality", mq, batch_id)
    return sq, mq

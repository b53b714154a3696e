"""Using the quality tables: what needs attention, and which passages clear a floor.

Reads what the ``segment_quality`` model step writes (``segment_quality``: one row per
segment of ``segments``, DNSMOS P.835 ``sig``/``bak``/``ovrl`` and Whisper's confidences with
flags; ``media_quality``: one row per media item, with the floor it counted against).
Dagster-free, like the rest of :mod:`..query`, and reading only the files a lookup names:

- :func:`needs_attention`: the files and the segments an archivist should look at, of one
  drop (its batches from ``batches``, then only those batches' ``media_quality``,
  ``segment_quality`` and ``media`` files) or of the whole archive.
- :func:`segment_scores` / :func:`span_quality`: the score of any time span of a media item
  (a search passage, a translated segment), for ``--min-quality``.

**How a span is judged.** A span's quality is the speech-weighted DNSMOS ``ovrl`` of the
segments of the same media item it covers: ``sum(ovrl_i * overlap_i) / sum(overlap_i)``
over the segments whose time overlaps the span and whose ``ovrl`` is not null (``overlap_i``
is the seconds the segment shares with the span). A segment is its own span, so it is judged
by its own ``ovrl``.

**Unscored is kept.** A span no scored segment covers (a file of a batch processed before the
quality step existed, a segment shorter than DNSMOS's window, whose scores are null with a
reason) has quality null, and every ``min_quality`` filter keeps it: a floor leaves out what
was measured to be poor, never what was not measured. :func:`passes` is that rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from ..schemas import QUALITY_FLAGS
from ..storage import Warehouse
from .core import NoMatch, QueryError, scan, table_files

DNSMOS_RANGE = (1.0, 5.0)

SEGMENT_COLUMNS = (
    "source_uri",
    "media_id",
    "batch_id",
    "segment_id",
    "start_s",
    "end_s",
    "speaker",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "words_per_s",
    "flags",
    "reasons",
)
FILE_COLUMNS = (
    "source_uri",
    "media_id",
    "batch_id",
    "status",
    "error",
    "duration_s",
    "speech_s",
    "speech_above_floor_s",
    "quality_floor",
    "dnsmos_ovrl_mean",
    "dnsmos_ovrl_p10",
    "telephone_band",
    "clipped_share",
    "flags",
    "segments_listed",
)


@dataclass
class Attention:
    """What :func:`needs_attention` found: ``files`` (FILE_COLUMNS: failed quality runs and
    poorest first) and ``segments`` (SEGMENT_COLUMNS, in file and time order); ``flags`` and
    ``reasons`` are joined into one text cell each (``", "`` and ``"; "``)."""

    files: pl.DataFrame
    segments: pl.DataFrame
    batches: list[str]  # the batches read

    def for_terminal(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The files and segments narrowed for a terminal table: the file's name, the first 12
        digits of its media id, scores to 2 decimals (CSV, JSON and Parquet keep every column)."""
        name = pl.col("source_uri").str.split("/").list.last().alias("file")
        media = pl.col("media_id").str.slice(0, 12).alias("media")
        files = self.files.select(
            name,
            media,
            "status",
            pl.col("speech_s").round(1),
            pl.col("speech_above_floor_s").round(1).alias("above_floor_s"),
            pl.col("dnsmos_ovrl_mean").round(2).alias("ovrl_mean"),
            pl.col("dnsmos_ovrl_p10").round(2).alias("ovrl_p10"),
            "flags",
            pl.col("segments_listed").alias("segments"),
            "error",
        )
        segments = self.segments.select(
            name,
            media,
            pl.col("start_s").round(2),
            pl.col("end_s").round(2),
            "speaker",
            *(pl.col(f"dnsmos_{k}").round(2).alias(k) for k in ("sig", "bak", "ovrl")),
            "flags",
            "reasons",
        )
        return files, segments


def check_floor(value: float, what: str = "--min-quality") -> float:
    """A DNSMOS ``ovrl`` floor (1 to 5), or :class:`QueryError` saying so."""
    lo, hi = DNSMOS_RANGE
    try:
        floor = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{what} must be a DNSMOS score from {lo:g} to {hi:g}, not {value!r}") from None
    if not lo <= floor <= hi:
        raise QueryError(f"{what} must be a DNSMOS score from {lo:g} to {hi:g} (DNSMOS ovrl), not {floor:g}")
    return floor


def passes(quality: pl.Expr, floor: float) -> pl.Expr:
    """Kept by a ``floor``: at or above it, or unscored (null)."""
    return quality.is_null() | (quality >= floor)


def drop_batches(wh: Warehouse, drop: str) -> list[str]:
    """The batch ids registered for ``drop`` (one read of the ``batches`` column pair), or
    :class:`NoMatch` naming the drops there are."""
    batches = scan(wh, table_files(wh, "batches"), "batches").select("batch_id", "drop").unique().collect()
    ids = sorted(set(batches.filter(pl.col("drop") == drop)["batch_id"].to_list()))
    if not ids:
        drops = batches.select("drop").unique().sort("drop")
        raise NoMatch(f"no drop {drop!r} in {wh.root_uri}; {drops.height} drop(s):", drops)
    return ids


def _sources(wh: Warehouse, batch_ids: list[str] | None) -> pl.LazyFrame:
    return (
        scan(wh, table_files(wh, "media", batch_ids), "media")
        .filter((pl.col("status") == "ok") & pl.col("media_id").is_not_null())
        .select("media_id", "source_uri")
        .unique("media_id", keep="first")
    )


def needs_attention(
    wh: Warehouse, *, drop: str | None = None, below: float | None = None, flag: str | None = None
) -> Attention:
    """The files and segments that need attention.

    - ``below``: segments whose DNSMOS ``ovrl`` is under it (and files whose mean is);
    - ``flag``: segments carrying that flag (``repetition``, ``low_confidence``,
      ``speech_mismatch``, ``noisy``, ``clipped``), and files carrying it as a media-level
      flag (e.g. ``telephone_band``);
    - both: segments meeting both; neither: segments under their file's quality floor or
      carrying any flag.

    A file is listed when some of its segments are, when it carries a media-level flag
    (the wanted one, with ``flag``), when its mean is under ``below``, or when the quality
    step failed for it (always, unless ``flag`` asks for something else). Unscored segments
    (null ``ovrl``) are never "below" anything; they are listed only for their flags."""
    if below is not None:
        below = check_floor(below, "--below")
    batch_ids = drop_batches(wh, drop) if drop else None
    mq = scan(wh, table_files(wh, "media_quality", batch_ids), "media_quality").collect()
    sq = scan(wh, table_files(wh, "segment_quality", batch_ids), "segment_quality")
    if flag is not None:
        flag = flag.strip()
        media_flags = set(mq["flags"].explode().drop_nulls().unique().to_list()) if mq.height else set()
        if flag not in QUALITY_FLAGS and flag not in media_flags:
            known = pl.DataFrame({"flag": sorted(set(QUALITY_FLAGS) | media_flags)})
            raise NoMatch(f"no segment or file is flagged {flag!r}; the flags are:", known)
    floors = mq.select("media_id", "quality_floor").unique("media_id")
    ovrl = pl.col("dnsmos_ovrl")
    has_flag = pl.col("flags").list.contains(pl.lit(flag)) if flag is not None else None
    if below is not None and has_flag is not None:
        wanted = (ovrl < below) & has_flag
    elif below is not None:
        wanted = ovrl < below
    elif has_flag is not None:
        wanted = has_flag
    else:
        wanted = (ovrl < pl.col("quality_floor")) | (pl.col("flags").list.len() > 0)
    sources = _sources(wh, batch_ids).collect()
    segments = (
        sq.join(floors.lazy(), on="media_id", how="left")
        .filter(wanted.fill_null(False))
        .join(sources.lazy(), on="media_id", how="left")
        .with_columns(
            flags=pl.col("flags").list.join(", "),
            reasons=pl.col("flag_reasons").list.join("; "),
        )
        .select(SEGMENT_COLUMNS)
        .sort("source_uri", "media_id", "start_s", "segment_id", nulls_last=True)
        .collect()
    )
    listed = segments.group_by("media_id").agg(segments_listed=pl.len())
    mq = mq.join(listed, on="media_id", how="left").with_columns(pl.col("segments_listed").fill_null(0))
    keep = pl.col("segments_listed") > 0
    if flag is not None:
        keep = keep | pl.col("flags").list.contains(pl.lit(flag))
    else:
        keep = keep | (pl.col("flags").list.len() > 0) | (pl.col("status") != "ok")
        if below is not None:
            keep = keep | (pl.col("dnsmos_ovrl_mean") < below).fill_null(False)
    files = (
        mq.filter(keep)
        .join(sources, on="media_id", how="left")
        .with_columns(pl.col("flags").list.join(", "), pl.col("segments_listed").cast(pl.Int64))
        .sort(
            pl.col("status") == "ok",
            pl.col("dnsmos_ovrl_mean"),
            "source_uri",
            nulls_last=True,
        )
        .select(FILE_COLUMNS)
    )
    read = batch_ids if batch_ids is not None else sorted(set(mq["batch_id"].to_list()))
    return Attention(files=files, segments=segments, batches=read)


# -- scores of spans ---------------------------------------------------------------------------------
def segment_scores(wh: Warehouse, batch_ids: Iterable[str], media_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """``media_id, segment_id, start_s, end_s, dnsmos_ovrl`` of these batches' scored
    segments (only their ``segment_quality`` files; a batch without one contributes none)."""
    lf = scan(wh, table_files(wh, "segment_quality", sorted(set(batch_ids))), "segment_quality")
    if media_ids is not None:
        ids = pl.Series(sorted(set(media_ids)), dtype=pl.Utf8).implode()
        lf = lf.filter(pl.col("media_id").is_in(ids))
    return lf.select("media_id", "segment_id", "start_s", "end_s", "dnsmos_ovrl").collect()


def span_quality(spans: pl.DataFrame, scores: pl.DataFrame, name: str = "quality") -> pl.DataFrame:
    """``spans`` (with ``media_id``, ``start_s``, ``end_s``) plus a column ``name``: the
    speech-weighted DNSMOS ``ovrl`` of the scored segments each span overlaps (null: none,
    unscored). A zero-length span takes the segments containing its instant, equally."""
    scored = scores.filter(pl.col("dnsmos_ovrl").is_not_null()).select(
        "media_id", seg_start="start_s", seg_end="end_s", ovrl="dnsmos_ovrl"
    )
    indexed = spans.with_row_index("_span")
    if indexed.is_empty() or scored.is_empty():
        return spans.with_columns(pl.lit(None, pl.Float64).alias(name))
    overlap = pl.min_horizontal("end_s", "seg_end") - pl.max_horizontal("start_s", "seg_start")
    point = (pl.col("end_s") <= pl.col("start_s")) & (pl.col("seg_start") <= pl.col("start_s"))
    point = point & (pl.col("start_s") <= pl.col("seg_end"))
    weights = (
        indexed.select("_span", "media_id", "start_s", "end_s")
        .join(scored, on="media_id", how="inner")
        .with_columns(weight=pl.when(overlap > 0).then(overlap).when(point).then(1.0).otherwise(0.0))
        .filter(pl.col("weight") > 0)
        .group_by("_span")
        .agg(((pl.col("ovrl") * pl.col("weight")).sum() / pl.col("weight").sum()).alias(name))
    )
    return indexed.join(weights, on="_span", how="left").sort("_span").drop("_span")

"""``archive_summary``: the dashboard of the whole archive, refreshed after each batch run
(sensor ``summarize_after_batch``) and nightly (schedule ``nightly_archive_summary``).

Its materialization metadata holds the numbers as plain numeric values, so the UI plots each
over time (files by status, audio hours, languages, local / global / named speakers, failing
batches; the yield: hours in, hours of speech and hours at or above the quality floor of the
scored files, files scored and not scored, segments per quality flag), and markdown tables
per drop (files, and the yield), of the slowest and of the failing batches. A figure nothing
was measured for (speech hours when no file is scored yet) is left out, never written as 0. Its check
``no_partly_failed_batches`` names each batch with failed files in its description.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from ..query.summary import SEGMENT_FLAG_COUNTS, ArchiveSummary
from ..query.summary import archive_summary as summarize
from ..resources import WarehouseResource
from .checks import markdown_table

SUMMARY_CHECK = "no_partly_failed_batches"


def yield_metadata(s: ArchiveSummary) -> dict:
    """The yield as metadata: floats and ints the UI plots, and the per-drop table."""
    t = s.totals
    md = {
        "hours_in": dg.MetadataValue.float(round(t["hours_in"], 4)),
        "files_scored": dg.MetadataValue.int(t["scored_files"]),
        "files_not_scored": dg.MetadataValue.int(t["not_scored_files"]),
        "hours_not_scored": dg.MetadataValue.float(round(t["not_scored_h"], 4)),
    }
    if t["speech_h"] is not None:  # something was scored: these are measured
        md["speech_hours"] = dg.MetadataValue.float(round(t["speech_h"], 4))
        md["hours_above_floor"] = dg.MetadataValue.float(round(t["above_floor_h"], 4))
        for flag in SEGMENT_FLAG_COUNTS:  # segments per flag, 0 included: a series to plot
            md[f"flag_{flag}"] = dg.MetadataValue.int(int(s.flag_counts.get(flag, 0)))
        for flag, n in s.flag_counts.items():  # media-level flags: files
            if flag not in SEGMENT_FLAG_COUNTS:
                key = f"flag_{flag.removesuffix(' (file)')}" + ("_files" if flag.endswith(" (file)") else "")
                md[key] = dg.MetadataValue.int(int(n))
    if t["above_floor_share"] is not None:
        md["share_above_floor"] = dg.MetadataValue.float(round(t["above_floor_share"], 4))
    if t["quality_floors"]:
        md["quality_floor"] = dg.MetadataValue.text(", ".join(f"{f:g}" for f in t["quality_floors"]))
    per_drop = s.yield_per_drop.with_columns(
        [pl.col(c).round(3) for c in ("hours_in", "not_scored_h", "speech_h", "above_floor_h", "above_floor_share")]
    )
    md["yield_per_drop"] = dg.MetadataValue.md(markdown_table(per_drop))
    return md


@dg.asset(
    name="archive_summary",
    group_name="operations",
    # what query.summary reads: a few columns of the per-batch tables and the speaker state
    deps=[
        *("media", "transcripts", "diarization", "speaker_embeddings", "media_quality"),
        *("speaker_clusters", "speaker_centroids", "speaker_profiles"),
    ],
    kinds={"polars"},
    description=(
        "Files by status, audio hours, languages and speakers per drop and in total; the yield (hours in, of speech, "
        "at or above the quality floor; flags); slowest and failing batches."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            SUMMARY_CHECK,
            asset="archive_summary",
            description="No batch of the archive has files whose status is `failed` (they are named when some do).",
        )
    ],
)
def archive_summary(warehouse: WarehouseResource):
    wh = warehouse.get()
    s = summarize(wh)
    t = s.totals
    metadata = {
        "drops": dg.MetadataValue.int(t["drops"]),
        "batches": dg.MetadataValue.int(t["batches"]),
        "files": dg.MetadataValue.int(t["files"]),
        "files_ok": dg.MetadataValue.int(t["ok"]),
        "files_failed": dg.MetadataValue.int(t["failed"]),
        "files_skipped": dg.MetadataValue.int(t["skipped"]),
        "audio_hours": dg.MetadataValue.float(round(t["audio_h"], 4)),
        "languages": dg.MetadataValue.int(t["languages"]),
        "local_speakers": dg.MetadataValue.int(t["local_speakers"]),
        "global_speakers": dg.MetadataValue.int(t["global_speakers"]),
        "named_speakers": dg.MetadataValue.int(t["named_speakers"]),
        "failing_batches": dg.MetadataValue.int(t["failing_batches"]),
        "per_drop": dg.MetadataValue.md(markdown_table(s.per_drop.with_columns(s.per_drop["audio_h"].round(3)))),
        "slowest_batches": dg.MetadataValue.md(markdown_table(s.slowest)),
        "failing_batches_list": dg.MetadataValue.md(markdown_table(s.failing.head(100))),
        "languages_list": dg.MetadataValue.md(markdown_table(s.languages.head(50))),
        **yield_metadata(s),
    }
    yield dg.MaterializeResult(metadata=metadata)
    failing = s.failing["batch_id"].to_list()
    yield dg.AssetCheckResult(
        check_name=SUMMARY_CHECK,
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(failing)} batch(es) with failed files: {', '.join(failing[:20])}{' ...' if len(failing) > 20 else ''}"
            if failing
            else "no batch has failed files"
        ),
        metadata={
            "failing_batches": dg.MetadataValue.int(len(failing)),
            "batches": dg.MetadataValue.md(markdown_table(s.failing.head(100))),
        },
    )

"""One file never fails a batch, in the CPU stages too: per-file computation and per-file
validation, with what was held back recorded against the file.

The model steps already record a failed file in their state table (``assets/modelstep.py``).
The stages that derive rows from them (attribution, analytics, chunks, translation, exports)
work over the whole batch; here is what keeps one file's bad luck from spreading:

- :func:`per_file`: run a per-file function; an exception becomes an *issue* for that file
  (stage, reason) and the other files go on;
- :func:`hold_back_invalid`: validate a table's rows with its pandera model **before** they are
  written; the rows of every file with a failing row are removed (never materialized as if
  good) and each failure becomes an issue naming the rule and the values;
- :func:`write_issues`: the stage's issues as ``file_issues/batch_id=<id>/<stage>.parquet``
  (one part per stage, rewritten by each run of the stage, so a fixed file's issue goes away),
  with the file's source name, for analysts, the CLI summary and the Dagster UI;
- :func:`issues_check_spec` / :func:`issues_check_result`: an ERROR (non-blocking) check on the stage's table
  listing the files held back (source name, rule, values) in its metadata.

A file held back by a stage is missing from that stage's tables only: what other stages
computed for it stays, and every other file goes on through every later stage.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from ..query.issues import issues_path
from ..schemas import TABLES, FileIssues, conform, utc_now
from .checks import check_spec, file_name, markdown_table

T = TypeVar("T")
MAX_VALUES_CHARS = 500


@dataclass(frozen=True)
class Issue:
    """Why one file's rows of one stage were held back."""

    media_id: str
    stage: str
    table: str | None
    rule: str  # the pandera check (``longest_turn_within_talk``, ``greater_than_or_equal_to(1)``) or "exception"
    reason: str  # one line a person can act on
    values: str = ""  # the offending row(s) or value(s), JSON, cut to MAX_VALUES_CHARS


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUES_CHARS else text[: MAX_VALUES_CHARS - 1] + "…"


def per_file(stage: str, items: Iterable[tuple[str, T]], fn: Callable[[str, T], object]) -> tuple[dict, list[Issue]]:
    """``fn(media_id, item)`` for each item; results by media id, and an issue for each file whose
    call raised (the exception's type and message; the traceback's last frame in ``values``)."""
    results, issues = {}, []
    for media_id, item in items:
        try:
            results[media_id] = fn(media_id, item)
        except Exception as exc:  # one file's failure is that file's: recorded, the batch goes on
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}" if frame else ""
            issues.append(Issue(media_id, stage, None, "exception", f"{type(exc).__name__}: {exc}"[:300], where))
    return results, issues


def _row_json(row: dict) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in ("embedding",)}, default=str, ensure_ascii=False)


def _failures(model, df: pl.DataFrame) -> pl.DataFrame | None:
    try:
        model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return None


def hold_back_invalid(table: str, df: pl.DataFrame, stage: str) -> tuple[pl.DataFrame, list[Issue]]:
    """``df`` without the rows of the files that break the table's model, and one issue per
    (file, rule) with the offending values. A failure pandera cannot pin on a row (a whole-frame
    rule) is pinned by validating each file's rows alone."""
    model = TABLES[table]
    cases = _failures(model, df)
    if cases is None or df.is_empty():
        return df, []
    if "media_id" not in df.columns:
        raise ValueError(f"{table}: rows without media_id cannot be held back per file")
    indexed = df.with_row_index("_row")
    found: dict[tuple[str, str], list[str]] = {}
    unpinned = False
    for case in cases.iter_rows(named=True):
        index = case.get("index")
        if index is None:
            unpinned = True
            continue
        row = indexed.row(int(index), named=True)
        rule = f"{case['column']}: {case['check']}" if case["schema_context"] == "Column" else str(case["check"])
        value = _row_json({k: v for k, v in row.items() if k != "_row"})
        found.setdefault((row["media_id"], rule), []).append(value)
    if unpinned:  # e.g. a uniqueness or group rule: which files break it on their own rows
        for (media_id,), rows in df.partition_by("media_id", as_dict=True).items():
            own = _failures(model, rows)
            if own is not None:
                for case in own.filter(pl.col("index").is_null()).iter_rows(named=True):
                    found.setdefault((media_id, str(case["check"])), []).append(str(case["failure_case"]))
    bad = {m for m, _ in found}
    issues = [
        Issue(
            media_id,
            stage,
            table,
            rule,
            f"{len(values)} row(s) of `{table}` break `{rule}`: the file's `{table}` rows were held back",
            _cut("[" + ", ".join(values[:3]) + "]"),
        )
        for (media_id, rule), values in sorted(found.items())
    ]
    return df.filter(~pl.col("media_id").is_in(sorted(bad))), issues


def hold_back_files(stage: str, issues: list[Issue], **tables: pl.DataFrame) -> tuple[list[pl.DataFrame], list[Issue]]:
    """Validate each of a stage's tables (:func:`hold_back_invalid`) and leave every file with an
    issue (``issues`` already found, plus the rules broken here) out of all of them: a file is
    held back from the stage's tables together. The tables in the order given, and all issues."""
    issues = list(issues)
    kept = []
    for table, df in tables.items():
        df, held = hold_back_invalid(table, df, stage)
        kept.append(df)
        issues += held
    bad = sorted({i.media_id for i in issues})
    return [df.filter(~pl.col("media_id").is_in(bad)) for df in kept], issues


def issues_frame(batch_id: str, issues: list[Issue], media: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``file_issues`` rows of ``issues``, each with its file's source name from ``media``."""
    if not issues:
        return conform(pl.DataFrame(), FileIssues).clear()
    df = pl.DataFrame([i.__dict__ for i in issues], schema_overrides={"table": pl.Utf8}).with_columns(
        batch_id=pl.lit(batch_id), recorded_at=pl.lit(utc_now())
    )
    if media is not None and media.height and "source_uri" in media.columns:
        names = media.select("media_id", "source_uri").unique("media_id")
        df = df.join(names, on="media_id", how="left")
    return conform(df, FileIssues)


def write_issues(wh, batch_id: str, stage: str, issues: list[Issue], media: pl.DataFrame | None = None) -> pl.DataFrame:
    """Replace the stage's part of ``file_issues`` for the batch (an empty part when none)."""
    df = issues_frame(batch_id, issues, media)
    wh.write_parquet(issues_path(wh, batch_id, stage), df)
    return df


def issues_check_name(stage: str) -> str:
    return f"{stage}_no_files_held_back"


def issues_check_spec(stage: str, asset: str) -> dg.AssetCheckSpec:
    return check_spec(
        issues_check_name(stage),
        asset,
        f"No file's rows were held back by `{stage}` (severity ERROR, not blocking: the batch goes on;"
        " the files, the rule broken and the values are listed in the check's metadata and in the"
        " `file_issues` table, and the batch shows as a failed partition of this check).",
        blocking=False,
    )


def issues_check_result(stage: str, asset: str, issues: pl.DataFrame) -> dg.AssetCheckResult:
    shown = issues.select(
        file_name(),
        "media_id",
        "rule",
        "values",
    )
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=issues_check_name(stage),
        passed=issues.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if issues.is_empty()
        else "held back: " + "; ".join(f"{f} ({r})" for f, r in shown.select("file", "rule").head(5).iter_rows()),
        metadata={
            "files_held_back": dg.MetadataValue.int(issues["media_id"].n_unique()),
            "issues": dg.MetadataValue.md(markdown_table(shown.head(100))),
        },
    )


def held_back_tag(stage: str) -> str:
    return f"opentranscribe/{stage}_files_held_back"


def record_issues(
    context: dg.AssetExecutionContext, wh, batch_id: str, stage: str, issues: list[Issue], media: pl.DataFrame | None
) -> pl.DataFrame:
    """Write the stage's part of ``file_issues`` (:func:`write_issues`) and, when it held files
    back, tag the run: the runs list and the partition's runs show
    ``opentranscribe/<stage>_files_held_back: N`` without a click (as failed model-step files do)."""
    held = write_issues(wh, batch_id, stage, issues, media)
    if held.height:
        context.instance.add_run_tags(context.run_id, {held_back_tag(stage): str(held["media_id"].n_unique())})
    return held

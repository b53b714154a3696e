"""Asset checks: one generated from the pandera model of every table, and a warning check
per step that lists the files that failed there.

Checks run inside the asset that wrote the table (``check_specs`` on the asset), so they
see exactly the partition just written, and a failed check carries pandera's failure cases
as metadata instead of a swallowed exception.
"""

from __future__ import annotations

import warnings

import dagster as dg
import pandera.polars as pa
import polars as pl

from ..partitions import batch_partitions
from ..schemas import TABLES

MAX_FAILURE_ROWS = 20
# tables of the whole archive (speaker state): their checks have no batch partition
ARCHIVE_WIDE = frozenset({"speaker_clusters", "speaker_centroids", "speaker_suggestions", "speaker_profiles"})


def check_partitions(table: str):
    """The batch partitions for a per-batch table's checks, so every check result is recorded
    against its batch (the UI's check page lists it per partition); None for archive-wide ones."""
    return None if table in ARCHIVE_WIDE else batch_partitions


def check_spec(name: str, asset: str, description: str, *, blocking: bool) -> dg.AssetCheckSpec:
    """An asset check with the partitions of its table (see ``check_partitions``). Dagster
    1.13 marks partitioned checks as a preview (pinned here: ``dagster==1.13.27``); the
    warning is silenced for them only, so an operator's console stays clean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name=name,
            asset=asset,
            description=description,
            blocking=blocking,
            partitions_def=check_partitions(asset),
        )


def schema_check_name(table: str) -> str:
    return f"{table}_matches_schema"


def schema_check_spec(table: str) -> dg.AssetCheckSpec:
    model = TABLES[table]
    return check_spec(
        schema_check_name(table),
        table,
        f"The batch's `{table}` rows validate against schemas.{model.__name__} (pandera).",
        blocking=True,
    )


def schema_check_result(table: str, df: pl.DataFrame) -> dg.AssetCheckResult:
    model = TABLES[table]
    try:
        model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return dg.AssetCheckResult(
            asset_key=table,
            check_name=schema_check_name(table),
            passed=False,
            metadata={
                "failures": dg.MetadataValue.int(cases.height),
                "failure_cases": dg.MetadataValue.md(_markdown(cases.head(MAX_FAILURE_ROWS))),
            },
        )
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=schema_check_name(table),
        passed=True,
        metadata={"rows": dg.MetadataValue.int(df.height)},
    )


def file_name() -> pl.Expr:
    """A file as the checks name it: its source file's name, else its media id."""
    return pl.col("source_uri").fill_null(pl.col("media_id")).str.split("/").list.last().alias("file")


def failed_files_check_name(table: str) -> str:
    return f"{table}_no_failed_files"


def failed_files_check_spec(table: str) -> dg.AssetCheckSpec:
    return check_spec(
        failed_files_check_name(table),
        table,
        f"No file of the batch has status `failed` in `{table}` (severity ERROR, not blocking: the"
        " batch still completes; the failed files, by source name, and their errors are listed in"
        " the check's metadata, and the batch shows as a failed partition of this check).",
        blocking=False,
    )


def failed_files_check_result(
    table: str, state: pl.DataFrame, sources: pl.DataFrame | None = None
) -> dg.AssetCheckResult:
    """Fails (ERROR, not blocking) when files of the batch failed at this step, naming each by
    its source file (``sources``: ``media_id, source_uri``, or ``state``'s own ``source_uri``)
    with its media id and error; the description names the first few so the run's event log
    says which files without a click."""
    failed = state.filter(pl.col("status") == "failed")
    if "source_uri" not in failed.columns:
        if sources is not None and not sources.is_empty():
            failed = failed.join(sources.select("media_id", "source_uri").unique("media_id"), on="media_id", how="left")
        else:
            failed = failed.with_columns(source_uri=pl.lit(None, pl.Utf8))
    shown = failed.select(
        file_name(),
        "media_id",
        pl.col("error").str.slice(0, 300).alias("error"),
    )
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=failed_files_check_name(table),
        passed=failed.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if failed.is_empty()
        else f"{failed.height} file(s) failed: "
        + "; ".join(f"{f} ({e[:80]})" for f, e in shown.select("file", "error").head(5).iter_rows()),
        metadata={
            "failed_files": dg.MetadataValue.int(failed.height),
            "files": dg.MetadataValue.int(state.height),
            "failed": dg.MetadataValue.md(_markdown(shown.head(100))),
        },
    )


def failed_files_tag(table: str) -> str:
    return f"opentranscribe/{table}_failed_files"


def tag_failed_files(context: dg.AssetExecutionContext, table: str, state: pl.DataFrame) -> None:
    """Tag the batch's run when files failed at this step: the runs list, the run page and
    the partition's runs show ``opentranscribe/<table>_failed_files: N`` without a click."""
    failed = state.filter(pl.col("status") == "failed").height
    if failed:
        context.instance.add_run_tags(context.run_id, {failed_files_tag(table): str(failed)})


def table_spec(
    table: str, description: str, *, group: str, deps: list[str] | tuple[str, ...] = (), kinds: tuple[str, ...] = ()
) -> dg.AssetSpec:
    """The spec of an asset that is one warehouse table: Parquet, its column schema shown."""
    return dg.AssetSpec(
        table,
        deps=list(deps),
        description=description,
        kinds={"parquet", *kinds},
        group_name=group,
        metadata={"dagster/column_schema": table_schema(table)},
    )


def table_schema(table: str) -> dg.TableSchema:
    """The model as a Dagster TableSchema, shown as the asset's column list in the UI."""
    schema = TABLES[table].to_schema()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=str(col.dtype),
                constraints=dg.TableColumnConstraints(nullable=bool(col.nullable), unique=bool(col.unique)),
            )
            for name, col in schema.columns.items()
        ]
    )


def _markdown(df: pl.DataFrame) -> str:
    if df.is_empty():
        return "(none)"
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ")[:120] for v in row) + " |")
    return "\n".join(lines)


markdown_table = _markdown

"""Run failures, recorded where analysts look: the archive-wide table ``run_failures``.

One Parquet file per failed run, ``<warehouse>/run_failures/<run_id>.parquet`` (written
atomically like every table; a re-delivered event rewrites the same file), one row per
failed step, or one row with a null ``step_key`` when the run failed outside any step
(e.g. it could not start, or was marked failed after its process died):

    run_id, job_name, partition_key (the batch id), failed_at, step_key, error

Read it with ``pl.scan_parquet("<warehouse>/run_failures/*.parquet")``.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandera.polars as pa
import polars as pl

from ..resources import WarehouseResource
from ..storage import Warehouse

TABLE = "run_failures"
MAX_ERROR_CHARS = 20_000


class RunFailures(pa.DataFrameModel):
    """What broke: one row per failed step of a failed run."""

    run_id: str
    job_name: str
    partition_key: str = pa.Field(nullable=True)
    failed_at: pl.Datetime(time_unit="us", time_zone="UTC")
    step_key: str = pa.Field(nullable=True)
    error: str

    class Config:
        strict = True
        coerce = False


def failure_rows(context: dg.RunFailureSensorContext) -> pl.DataFrame:
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    failed_at = (record.end_time if record and record.end_time else None) or dt.datetime.now(dt.UTC).timestamp()
    when = dt.datetime.fromtimestamp(failed_at, dt.UTC)
    steps = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        steps.append((event.step_key, error.to_string() if error else (event.message or "step failed")))
    if not steps:
        data = context.failure_event.event_specific_data
        error = getattr(data, "error", None)
        message = context.failure_event.message or "run failed"
        steps.append((None, f"{message}\n{error.to_string()}" if error else message))
    df = pl.DataFrame(
        {
            "run_id": [run.run_id] * len(steps),
            "job_name": [run.job_name] * len(steps),
            "partition_key": [run.tags.get("dagster/partition")] * len(steps),
            "failed_at": [when] * len(steps),
            "step_key": [s for s, _ in steps],
            "error": [e[:MAX_ERROR_CHARS] for _, e in steps],
        },
        schema={
            "run_id": pl.String,
            "job_name": pl.String,
            "partition_key": pl.String,
            "failed_at": pl.Datetime("us", "UTC"),
            "step_key": pl.String,
            "error": pl.String,
        },
    )
    return RunFailures.validate(df)


def run_warehouse(context: dg.RunFailureSensorContext, default: WarehouseResource) -> Warehouse:
    """The warehouse the failed run wrote to: its run config's root if it set one (the CLI
    does), else the code location's."""
    config = (context.dagster_run.run_config or {}).get("resources", {}).get("warehouse", {}).get("config", {})
    root = config.get("root") if isinstance(config, dict) else None
    if root:
        return Warehouse(root, default.s3_options())
    return default.get()


def failures_path(warehouse: Warehouse, run_id: str) -> str:
    return warehouse.path(TABLE, f"{run_id}.parquet")


def write_failures(warehouse: Warehouse, df: pl.DataFrame) -> str:
    """Write one failed run's rows (atomically; a re-delivered event rewrites the file)."""
    return warehouse.write_parquet(failures_path(warehouse, df["run_id"][0]), df)


@dg.run_failure_sensor(
    name="record_run_failures",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Writes each failed run (job, batch, failed step, error) into the run_failures table.",
)
def record_run_failures(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    run = context.dagster_run
    df = failure_rows(context)
    first = df.row(0, named=True)
    summary = (
        f"run {run.run_id} of {run.job_name} failed (batch {first['partition_key'] or '-'}, "
        f"step {first['step_key'] or '-'}): {first['error'].strip().splitlines()[0] if first['error'].strip() else ''}"
    )
    try:
        path = write_failures(run_warehouse(context, warehouse), df)
    except Exception as exc:  # the log line keeps the facts even when the warehouse is down
        context.log.error(f"{summary}; could not record it in {TABLE}: {type(exc).__name__}: {exc}")
        return
    context.log.error(f"{summary}; recorded in {path}")

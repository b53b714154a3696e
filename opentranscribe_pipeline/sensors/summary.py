"""Refresh ``archive_summary`` after batch runs: one summary run per finished batch run,
skipped while one is already waiting (a backfill of a thousand batches queues one, not a
thousand)."""

from __future__ import annotations

import dagster as dg


def summary_sensor(
    batch_job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition,
    summary_job,
    run_status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS,
) -> dg.SensorDefinition:
    """After each ``batch_job`` run that ends with ``run_status`` (one sensor for successes, one
    for failures: a failed batch run's dashboard must show what is missing too)."""
    name = "summarize_after_batch" if run_status == dg.DagsterRunStatus.SUCCESS else "summarize_after_failed_batch"
    ended = "succeeds" if run_status == dg.DagsterRunStatus.SUCCESS else "fails"

    @dg.run_status_sensor(
        name=name,
        run_status=run_status,
        monitored_jobs=[batch_job],
        request_job=summary_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Materializes archive_summary after a transcribe_batch run {ended}.",
    )
    def summarize_after_batch(context: dg.RunStatusSensorContext):
        waiting = context.instance.get_runs(
            filters=dg.RunsFilter(
                job_name=summary_job.name,
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING],
            ),
            limit=1,
        )
        if waiting:
            return dg.SkipReason(f"a {summary_job.name} run is already waiting: {waiting[0].run_id}")
        return dg.RunRequest(run_key=f"summary-after-{context.dagster_run.run_id}")

    return summarize_after_batch

"""Refresh ``archive_summary`` after batch runs: one summary run per finished batch run,
skipped while one is already waiting (a backfill of a thousand batches queues one, not a
thousand)."""

from __future__ import annotations

import dagster as dg


def summary_sensor(batch_job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition, summary_job) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name="summarize_after_batch",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[batch_job],
        request_job=summary_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Materializes archive_summary after a transcribe_batch run succeeds.",
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

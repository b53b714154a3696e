"""Publish a batch once its speakers have global ids.

A run-status sensor on ``assign_speakers``: when such a run succeeds, it requests one
``publish_batch`` run (exports, and whatever else needs global ids or names) for every
batch that run assigned (its ``batch_ids`` run config). Run key = the assignment run and
batch, so a retried tick never launches twice.
"""

from __future__ import annotations

import dagster as dg

from ..assets.clustering import CLUSTER_OP

PUBLISH_SENSOR = "publish_after_assignment"


def assigned_batches(run_config: dict) -> list[str]:
    """The batches an ``assign_speakers`` run's config names."""
    ops = (run_config or {}).get("ops", {})
    return list(ops.get(CLUSTER_OP, {}).get("config", {}).get("batch_ids", []) or [])


def publish_after_assignment(assign_job, publish_job) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name=PUBLISH_SENSOR,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[assign_job],
        request_job=publish_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs `publish_batch` for each batch an `assign_speakers` run gave global ids.",
    )
    def _sensor(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        batches = assigned_batches(run.run_config)
        if not batches:
            return dg.SkipReason(f"run {run.run_id} assigned no batch")
        return [
            dg.RunRequest(
                run_key=f"publish-{run.run_id}-{b}",
                partition_key=b,
                tags={"opentranscribe/batch": b},
            )
            for b in batches
        ]

    return _sensor

"""Publish a batch once its speakers have global ids: ``publish_batch`` after ``assign_speakers``.

A run-status sensor: each successful ``assign_speakers`` run names the batches it assigned
in its run config; one ``publish_batch`` run is requested per batch (run key = the
assigning run and the batch, so a retried tick never launches twice). ``publish_batch``
holds the per-batch assets that need global speaker ids (``search_index``).
"""

from __future__ import annotations

import dagster as dg

from ..assets.clustering import CLUSTER_OP
from .speakers import ASSIGN_JOB

PUBLISH_JOB = "publish_batch"


def assigned_batches(run_config: dict) -> list[str]:
    """The batches an ``assign_speakers`` run assigned, from its run config."""
    op = (run_config.get("ops") or {}).get(CLUSTER_OP) or {}
    return list((op.get("config") or {}).get("batch_ids") or [])


def publish_after_assignment_sensor(publish_job) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="publish_after_assignment",
        request_job=publish_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs `publish_batch` for each batch an `assign_speakers` run just gave global ids.",
    )
    def publish_after_assignment(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if run.job_name != ASSIGN_JOB:
            return dg.SkipReason(f"{run.job_name} is not {ASSIGN_JOB}")
        batches = assigned_batches(run.run_config or {})
        if not batches:
            return dg.SkipReason(f"run {run.run_id} assigned no batches")
        return [
            dg.RunRequest(run_key=f"publish-{run.run_id}-{b}", partition_key=b, tags={"opentranscribe/batch": b})
            for b in batches
        ]

    return publish_after_assignment

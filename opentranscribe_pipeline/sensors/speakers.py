"""Assign a batch's speakers to global ids as soon as its embeddings land.

An asset sensor on ``speaker_embeddings``: every materialization of a batch partition
requests one ``assign_speakers`` run for that batch (run key = the materializing run and batch, so a
tick that is retried never launches twice). The run compares the batch's speakers with the
voice centroids only, so it costs time proportional to the batch, not to the archive; the
nightly ``recluster_speakers`` schedule then refines everything.
"""

from __future__ import annotations

import dagster as dg

from ..assets.clustering import clustering_run_config

ASSIGN_JOB = "assign_speakers"


@dg.asset_sensor(
    asset_key=dg.AssetKey("speaker_embeddings"),
    job_name=ASSIGN_JOB,
    name="assign_new_speakers",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs `assign_speakers` for each batch whose speaker_embeddings were just materialized.",
)
def assign_new_speakers(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    event = asset_event.dagster_event
    batch_id = event.partition if event is not None else None
    if not batch_id:
        return dg.SkipReason("speaker_embeddings materialized without a batch partition")
    return dg.RunRequest(
        run_key=f"assign-{asset_event.run_id}-{batch_id}",
        run_config=clustering_run_config("incremental", [batch_id]),
        tags={"opentranscribe/batch": batch_id},
    )

"""The code location: every asset, check, job and resource, listed explicitly."""

from __future__ import annotations

import os

import dagster as dg

from . import settings
from .assets import attribute_speakers, cluster_speakers, diarize, ingest, speaker_profiles, transcribe
from .assets.versions import with_code_versions
from .executors import batch_executor
from .partitions import batch_partitions
from .resources import AsrModelResource, DiarizationModelResource, SpeakerClusteringResource, WarehouseResource
from .sensors import DropSensorConfig, drop_sensor, record_run_failures
from .sensors.speakers import ASSIGN_JOB, CLUSTER_OP, assign_new_speakers

# pyannote.audio reports usage metrics unless told not to; this is the application entry
# point, so the default is decided here rather than inside library code.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

transcribe_batch = dg.define_asset_job(
    "transcribe_batch",
    selection=dg.AssetSelection.assets(ingest, transcribe, diarize, attribute_speakers),
    partitions_def=batch_partitions,
    description="One batch of files: media -> audio -> transcripts, speaker turns and embeddings -> segments, words.",
    executor_def=batch_executor(),  # Celery when OPENTRANSCRIBE_CELERY_BROKER is set, else multiprocess
)

assign_speakers = dg.define_asset_job(
    ASSIGN_JOB,
    selection=dg.AssetSelection.assets(cluster_speakers),
    config={"ops": {CLUSTER_OP: {"config": {"mode": "incremental"}}}},
    description="Give the speakers of new batches global ids (run by the assign_new_speakers sensor).",
)

recluster_speakers = dg.define_asset_job(
    "recluster_speakers",
    selection=dg.AssetSelection.assets(cluster_speakers),
    config={"ops": {CLUSTER_OP: {"config": {"mode": "full"}}}},
    description="Re-cluster every speaker of the archive, keeping global ids stable.",
)

nightly_recluster = dg.ScheduleDefinition(
    name="nightly_speaker_recluster",
    job=recluster_speakers,
    cron_schedule=settings.recluster_cron(),  # OPENTRANSCRIBE_RECLUSTER_CRON, default 03:00 daily
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Archive-wide speaker re-clustering (cron: OPENTRANSCRIBE_RECLUSTER_CRON).",
)

defs = dg.Definitions(
    # code versions name the configured models: change one and the UI marks outputs stale
    assets=with_code_versions([ingest, transcribe, diarize, attribute_speakers, cluster_speakers, speaker_profiles]),
    jobs=[transcribe_batch, assign_speakers, recluster_speakers],
    schedules=[nightly_recluster],
    sensors=[drop_sensor, record_run_failures, assign_new_speakers],
    resources={
        "warehouse": WarehouseResource(),
        "asr": AsrModelResource(),
        "diarization": DiarizationModelResource(),
        "clustering": SpeakerClusteringResource(),
        "drop_sensor_config": DropSensorConfig(),
    },
)

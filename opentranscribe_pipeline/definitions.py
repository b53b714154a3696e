"""The code location: every asset, check, job and resource, listed explicitly.

The CLI runs the same jobs from here (``opentranscribe process``), so a run started from a
terminal is the same graph, resources and checks as one started from the UI.
"""

from __future__ import annotations

import dagster as dg

from . import settings
from .assets import attribute_speakers, cluster_speakers, diarize, ingest, speaker_profiles, transcribe
from .assets.clustering import clustering_run_config
from .assets.search import embed_chunks, search_index, speakers_index
from .assets.versions import with_code_versions
from .executors import batch_executor
from .partitions import batch_partitions
from .resources import AsrModelResource, DiarizationModelResource, SpeakerClusteringResource, WarehouseResource
from .resources.search import SearchResource, TextEmbeddingResource
from .sensors import DropSensorConfig, drop_sensor, record_run_failures
from .sensors.publish import PUBLISH_JOB, publish_after_assignment_sensor
from .sensors.speakers import ASSIGN_JOB, assign_new_speakers

BATCH_JOB = "transcribe_batch"
RECLUSTER_JOB = "recluster_speakers"

__all__ = ["ASSIGN_JOB", "BATCH_JOB", "PUBLISH_JOB", "RECLUSTER_JOB", "clustering_run_config", "defs"]

transcribe_batch = dg.define_asset_job(
    BATCH_JOB,
    selection=dg.AssetSelection.assets(ingest, transcribe, diarize, attribute_speakers, embed_chunks),
    partitions_def=batch_partitions,
    description="One batch of files: media -> audio -> transcripts, speaker turns and embeddings -> segments, words.",
    executor_def=batch_executor(),  # Celery when OPENTRANSCRIBE_CELERY_BROKER is set, else multiprocess
)

assign_speakers = dg.define_asset_job(
    ASSIGN_JOB,
    selection=dg.AssetSelection.assets(cluster_speakers, speakers_index),
    config=clustering_run_config("incremental"),
    description="Give the speakers of new batches global ids (run by the assign_new_speakers sensor).",
)

recluster_speakers = dg.define_asset_job(
    RECLUSTER_JOB,
    selection=dg.AssetSelection.assets(cluster_speakers, speakers_index),
    config=clustering_run_config("full"),
    description="Re-cluster every speaker of the archive, keeping global ids stable.",
)

# Per-batch assets that need global speaker ids, after the batch's speakers were assigned.
publish_batch = dg.define_asset_job(
    PUBLISH_JOB,
    selection=dg.AssetSelection.assets(search_index),
    partitions_def=batch_partitions,
    description="One batch after speaker assignment: its chunks into the search index.",
)
publish_after_assignment = publish_after_assignment_sensor(publish_batch)

nightly_recluster = dg.ScheduleDefinition(
    name="nightly_speaker_recluster",
    job=recluster_speakers,
    cron_schedule=settings.recluster_cron(),  # OPENTRANSCRIBE_RECLUSTER_CRON, default 03:00 daily
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Archive-wide speaker re-clustering (cron: OPENTRANSCRIBE_RECLUSTER_CRON).",
)

defs = dg.Definitions(
    # code versions name the configured models: change one and the UI marks outputs stale
    assets=with_code_versions(
        [
            ingest,
            transcribe,
            diarize,
            attribute_speakers,
            cluster_speakers,
            speaker_profiles,
            embed_chunks,
            search_index,
            speakers_index,
        ]
    ),
    jobs=[transcribe_batch, assign_speakers, recluster_speakers, publish_batch],
    schedules=[nightly_recluster],
    sensors=[drop_sensor, record_run_failures, assign_new_speakers, publish_after_assignment],
    resources={
        "warehouse": WarehouseResource(),
        "asr": AsrModelResource(),
        "diarization": DiarizationModelResource(),
        "clustering": SpeakerClusteringResource(),
        "drop_sensor_config": DropSensorConfig(),
        "text_embedding": TextEmbeddingResource(),
        "search": SearchResource(),
    },
)

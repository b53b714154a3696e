"""The code location: every asset, check, job and resource, listed explicitly.

The CLI runs the same jobs from here (``opentranscribe process``), so a run started from a
terminal is the same graph, resources and checks as one started from the UI.
"""

from __future__ import annotations

import dagster as dg

from . import settings
from .assets import attribute_speakers, cluster_speakers, diarize, ingest, speaker_profiles, transcribe
from .assets.clustering import clustering_run_config
from .assets.exports import exports
from .assets.quality import score_quality
from .assets.search import embed_chunks, search_index, speakers_index
from .assets.stats import conversation_analytics
from .assets.summaries import summarize
from .assets.summary import archive_summary
from .assets.translation import translate
from .assets.versions import with_code_versions
from .executors import batch_executor, local_executor
from .partitions import batch_partitions
from .resources import (
    AsrModelResource,
    DiarizationModelResource,
    SpeakerClusteringResource,
    TranslationModelResource,
    WarehouseResource,
)
from .resources.deliver import ExportsResource
from .resources.quality import QualityModelResource
from .resources.search import SearchResource, TextEmbeddingResource
from .resources.summaries import summary_resource
from .sensors import DropSensorConfig, drop_sensor, record_run_failures
from .sensors.publish import publish_after_assignment
from .sensors.speakers import ASSIGN_JOB, assign_new_speakers
from .sensors.summary import summary_sensor

BATCH_JOB = "transcribe_batch"
RECLUSTER_JOB = "recluster_speakers"
PUBLISH_JOB = "publish_batch"
SUMMARY_JOB = "summarize_archive"

__all__ = ["ASSIGN_JOB", "BATCH_JOB", "PUBLISH_JOB", "RECLUSTER_JOB", "SUMMARY_JOB", "clustering_run_config", "defs"]

transcribe_batch = dg.define_asset_job(
    BATCH_JOB,
    selection=dg.AssetSelection.assets(
        ingest,
        transcribe,
        diarize,
        attribute_speakers,
        translate,
        conversation_analytics,
        embed_chunks,
        score_quality,
        summarize,
    ),
    partitions_def=batch_partitions,
    description=(
        "One batch of files, stage by stage: `ingest` (media, audio) -> `diarize` (speaker turns and embeddings; "
        "its speech regions are transcription's VAD) -> `transcribe` (transcripts, word timings) -> "
        "`attribute_speakers` (segments and words, a speaker on every word) -> `translate` (English: segments_en), "
        "`conversation_analytics` (speaker_stats, media_stats), `score_quality` (segment_quality, media_quality), "
        "`embed_chunks` (search passages: chunks) and, after translation, `summarize` (summaries, topics). "
        "Global speaker ids follow in assign_speakers, exports and the search index in publish_batch."
    ),
    executor_def=batch_executor(),  # Celery when OPENTRANSCRIBE_CELERY_BROKER is set, else multiprocess
)

assign_speakers = dg.define_asset_job(
    ASSIGN_JOB,
    selection=dg.AssetSelection.assets(cluster_speakers, speakers_index),
    config=clustering_run_config("incremental"),
    description="Give the speakers of new batches global ids, refresh the voices index (sensor assign_new_speakers).",
    executor_def=local_executor(),  # multiprocess, steps forked from a forkserver
)

recluster_speakers = dg.define_asset_job(
    RECLUSTER_JOB,
    selection=dg.AssetSelection.assets(cluster_speakers, speakers_index),
    config=clustering_run_config("full"),
    description="Re-cluster every speaker of the archive, keeping global ids stable.",
    executor_def=local_executor(),  # multiprocess, steps forked from a forkserver
)

# Per-batch assets that need global speaker ids or names, after the batch's speakers were assigned.
publish_batch = dg.define_asset_job(
    PUBLISH_JOB,
    selection=dg.AssetSelection.assets(exports, search_index),
    partitions_def=batch_partitions,
    description="One batch after speaker assignment: its exports (names known) and its chunks into the search index.",
    executor_def=local_executor(),  # multiprocess, steps forked from a forkserver
)

nightly_recluster = dg.ScheduleDefinition(
    name="nightly_speaker_recluster",
    job=recluster_speakers,
    cron_schedule=settings.recluster_cron(),  # OPENTRANSCRIBE_RECLUSTER_CRON, default 03:00 daily
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Archive-wide speaker re-clustering (cron: OPENTRANSCRIBE_RECLUSTER_CRON).",
)

summarize_archive = dg.define_asset_job(
    SUMMARY_JOB,
    selection=dg.AssetSelection.assets(archive_summary),
    description="The archive dashboard: files, hours, languages, speakers per drop; slowest and failing batches.",
    executor_def=local_executor(),  # multiprocess, steps forked from a forkserver
)

nightly_summary = dg.ScheduleDefinition(
    name="nightly_archive_summary",
    job=summarize_archive,
    cron_schedule=settings.summary_cron(),  # OPENTRANSCRIBE_SUMMARY_CRON, default 04:00 daily
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refreshes archive_summary (cron: OPENTRANSCRIBE_SUMMARY_CRON).",
)

summarize_after_batch = summary_sensor(transcribe_batch, summarize_archive)
summarize_after_failed_batch = summary_sensor(transcribe_batch, summarize_archive, dg.DagsterRunStatus.FAILURE)

defs = dg.Definitions(
    # code versions name the configured models: change one and the UI marks outputs stale
    assets=[
        *with_code_versions(
            [ingest, transcribe, diarize, attribute_speakers, cluster_speakers, speaker_profiles]
            + [translate, conversation_analytics, exports]
            + [embed_chunks, search_index, speakers_index, score_quality, summarize]
        ),
        archive_summary,
    ],
    jobs=[transcribe_batch, assign_speakers, recluster_speakers, publish_batch, summarize_archive],
    schedules=[nightly_recluster, nightly_summary],
    sensors=[drop_sensor, record_run_failures, assign_new_speakers, summarize_after_batch, summarize_after_failed_batch]
    + [publish_after_assignment(assign_speakers, publish_batch)],
    resources={
        "warehouse": WarehouseResource.from_settings(),
        "asr": AsrModelResource.from_settings(),
        "diarization": DiarizationModelResource.from_settings(),
        "clustering": SpeakerClusteringResource(),
        "drop_sensor_config": DropSensorConfig(),
        "translation": TranslationModelResource.from_settings(),
        "exports_config": ExportsResource(),
        "text_embedding": TextEmbeddingResource(),
        "search": SearchResource.from_settings(),
        "quality": QualityModelResource(),
        "summaries": summary_resource(),  # extractive offline; the LLM variables that are set, as EnvVar
    },
)

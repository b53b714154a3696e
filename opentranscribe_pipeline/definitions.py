"""The code location: every asset, check, job and resource, listed explicitly."""

from __future__ import annotations

import os

import dagster as dg

from .assets import ingest, transcribe
from .partitions import batch_partitions
from .resources import AsrModelResource, WarehouseResource
from .sensors import DropSensorConfig, drop_sensor, record_run_failures

# pyannote.audio reports usage metrics unless told not to; this is the application entry
# point, so the default is decided here rather than inside library code.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

transcribe_batch = dg.define_asset_job(
    "transcribe_batch",
    selection=dg.AssetSelection.assets(ingest, transcribe),
    partitions_def=batch_partitions,
    description="One batch of files: media -> audio -> transcripts, segments, words.",
)

defs = dg.Definitions(
    assets=[ingest, transcribe],
    jobs=[transcribe_batch],
    sensors=[drop_sensor, record_run_failures],
    resources={
        "warehouse": WarehouseResource(),
        "asr": AsrModelResource(),
        "drop_sensor_config": DropSensorConfig(),
    },
)

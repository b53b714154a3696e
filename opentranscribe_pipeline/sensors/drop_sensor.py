"""The Dagster sensor that turns complete drops into batch partitions and runs.

Sensors take no run config, so the settings come from the ``drop_sensor_config`` resource,
whose unset fields fall back to environment variables read on every tick (never at import),
through :mod:`opentranscribe_pipeline.settings`, which also holds the defaults:

| field | environment | default |
|---|---|---|
| ``incoming`` | ``OPENTRANSCRIBE_INCOMING`` | unset: the sensor skips every tick |
| ``marker`` | ``OPENTRANSCRIBE_READY_MARKER`` | ``_READY`` |
| ``quiet_minutes`` | ``OPENTRANSCRIBE_QUIET_MINUTES`` | unset: the marker is required |
| ``settle_seconds`` | ``OPENTRANSCRIBE_SETTLE_SECONDS`` | 30 (local folders only) |
| ``max_files`` / ``max_hours`` | ``OPENTRANSCRIBE_MAX_FILES`` / ``OPENTRANSCRIBE_MAX_HOURS`` | 200 / 20 |
| ``s3_*`` | ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... | botocore's |

Batch manifests and drop ledgers go to the ``warehouse`` resource's root, the same one the
runs use.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from .. import settings
from ..drops.batches import BatchLimits
from ..drops.rules import DropSettings
from ..drops.scanner import DropScanner
from ..drops.state import Cursor
from ..partitions import BATCHES, batch_partitions
from ..resources import WarehouseResource
from ..resources.storage import S3Settings
from ..storage import StorageUnavailable
from ..storage.sources import open_source


class DropSensorConfig(S3Settings):
    """Where drops arrive and when one counts as complete (see README, "Drop sensor")."""

    incoming: str | None = Field(
        default=None, description="s3://bucket/prefix or a local folder whose subfolders are drops"
    )
    marker: str | None = Field(
        default=None, description=f"name of the completion marker object (default {settings.READY_MARKER})"
    )
    quiet_minutes: float | None = Field(
        default=None, description="also complete a drop after this long without changes (unset or < 0: marker only)"
    )
    settle_seconds: float | None = Field(
        default=None,
        description="local folders: files modified more recently than this are still being written "
        f"(default {settings.DEFAULT_SETTLE_SECONDS:g})",
    )
    max_files: int | None = Field(default=None, description=f"files per batch (default {settings.BATCH_MAX_FILES})")
    max_hours: float | None = Field(
        default=None, description=f"hours of audio per batch (default {settings.BATCH_MAX_HOURS:g})"
    )
    max_files_per_tick: int = Field(default=1000, description="files registered per tick at most (the rest: next tick)")
    max_pending_drops: int = Field(default=100, description="incomplete drops tracked at once (bounds the cursor)")
    sweep_drops_per_tick: int = Field(default=1, description="registered drops re-checked per tick, round robin")
    watch_hours: float = Field(default=24.0, description="re-check a registered drop every tick for this long")
    watch_max: int = Field(default=10, description="at most this many drops re-checked every tick")

    def drop_settings(self) -> DropSettings | None:
        """The effective settings, environment included (through :mod:`..settings`, read now);
        None when no incoming URI is set."""
        incoming = self.incoming or settings.incoming()
        if not incoming:
            return None
        quiet = self.quiet_minutes if self.quiet_minutes is not None else settings.quiet_minutes()
        settle = self.settle_seconds if self.settle_seconds is not None else settings.settle_seconds()
        max_files = self.max_files or settings.batch_max_files()
        max_hours = self.max_hours or settings.batch_max_hours()
        return DropSettings(
            incoming=incoming,
            s3=self.s3_options(),
            marker=self.marker or settings.ready_marker(),
            quiet_s=None if quiet is None or quiet < 0 else quiet * 60.0,
            settle_s=settings.DEFAULT_SETTLE_SECONDS if settle is None else settle,
            limits=BatchLimits(max_files=max_files, max_hours=max_hours),
            max_files_per_tick=max(self.max_files_per_tick, max_files),
            max_pending_drops=self.max_pending_drops,
            sweep_per_tick=self.sweep_drops_per_tick,
            watch_s=self.watch_hours * 3600.0,
            watch_max=self.watch_max,
        )


def build_drop_sensor(
    name: str = "drop_sensor",
    *,
    job_name: str = "transcribe_batch",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """A drop sensor requesting runs of ``job_name`` (``clock`` is for tests of the quiet period)."""

    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Registers complete drops under OPENTRANSCRIBE_INCOMING as batches and runs them.",
    )
    def _drop_sensor(
        context: dg.SensorEvaluationContext, drop_sensor_config: DropSensorConfig, warehouse: WarehouseResource
    ):
        try:
            config = drop_sensor_config.drop_settings()
        except ValueError as exc:
            return dg.SkipReason(f"drop sensor misconfigured: {exc}")
        if config is None:
            return dg.SkipReason("no incoming prefix: set OPENTRANSCRIBE_INCOMING (or drop_sensor_config.incoming)")

        def has_partition(batch_id: str) -> bool:
            return context.instance.has_dynamic_partition(BATCHES, batch_id)

        try:
            source = open_source(config.incoming, config.s3)
            scanner = DropScanner(
                config, source, warehouse.get(), has_partition=has_partition, clock=clock, logger=context.log
            )
            result = scanner.tick(Cursor.parse(context.cursor))
        except StorageUnavailable as exc:  # the incoming prefix cannot be listed: keep the cursor, try again
            context.log.error(f"drop sensor: {exc}")
            return dg.SkipReason(f"cannot watch {config.incoming}: {exc}")
        except Exception as exc:  # never let one tick's surprise stop the sensor
            context.log.exception("drop sensor tick failed")
            return dg.SkipReason(f"drop sensor tick failed on {config.incoming}: {type(exc).__name__}: {exc}")

        for error in result.errors:
            context.log.error(f"drop sensor: {error}")
        batches = list({b.batch_id: b for b in result.batches}.values())
        run_requests = [
            dg.RunRequest(
                run_key=b.batch_id,  # Dagster never launches two runs for one run key of this sensor
                partition_key=b.batch_id,
                tags={"opentranscribe/drop": b.drop, "opentranscribe/source": b.source_uri},
            )
            for b in batches
        ]
        new_ids = [b.batch_id for b in batches if not context.instance.has_dynamic_partition(BATCHES, b.batch_id)]
        dynamic = [batch_partitions.build_add_request(new_ids)] if new_ids else []
        if not run_requests:
            return dg.SensorResult(skip_reason=result.summary(), cursor=result.cursor.dump())
        context.log.info(f"drop sensor: {result.summary()}")
        return dg.SensorResult(
            run_requests=run_requests, dynamic_partitions_requests=dynamic, cursor=result.cursor.dump()
        )

    return _drop_sensor


drop_sensor = build_drop_sensor()

"""Environment-driven defaults, read when called (never at import time).

Every knob has a built-in default that works offline on one machine; environment variables
override it, and Dagster run config overrides both (the resources' fields).
"""

from __future__ import annotations

import os

DEFAULT_WAREHOUSE = "warehouse"
DEFAULT_ASR_MODEL = "packaged:base"


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def warehouse_root() -> str:
    return env("OPENTRANSCRIBE_WAREHOUSE", DEFAULT_WAREHOUSE)


def asr_model() -> str:
    return env("OPENTRANSCRIBE_ASR_MODEL", DEFAULT_ASR_MODEL)


DEFAULT_DIARIZATION = "packaged"
DEFAULT_RECLUSTER_CRON = "0 3 * * *"


def diarization_pipeline() -> str:
    """``packaged`` (offline default), a Hugging Face id, or a local pipeline directory."""
    return env("OPENTRANSCRIBE_DIARIZATION", DEFAULT_DIARIZATION)


def recluster_cron() -> str:
    """When the archive-wide speaker re-clustering runs (read when definitions load)."""
    return env("OPENTRANSCRIBE_RECLUSTER_CRON", DEFAULT_RECLUSTER_CRON)


def celery_broker() -> str | None:
    """Broker URL (e.g. ``redis://host:6379/0``): when set, batch runs hand their steps to
    Celery workers, model steps on the ``gpu`` queue. Unset: the multiprocess executor."""
    return env("OPENTRANSCRIBE_CELERY_BROKER")


def celery_backend() -> str | None:
    """Result backend URL; defaults to the broker."""
    return env("OPENTRANSCRIBE_CELERY_BACKEND") or celery_broker()

"""How batch runs execute their steps.

Default (one machine): Dagster's multiprocess executor; model steps take turns through the
``gpu`` concurrency pool (``dagster.yaml``).

Production over several machines: set ``OPENTRANSCRIBE_CELERY_BROKER`` (read when the code
location loads) and every step of ``transcribe_batch`` becomes a Celery task. Model steps
(``transcribe``, ``diarize``) carry the tag ``dagster-celery/queue: gpu`` and go to the ``gpu``
queue; the rest go to ``dagster``. Serialise inference per device by running, on each GPU
host, one worker per device with ``--concurrency 1`` on the ``gpu`` queue; CPU workers take
``dagster``::

    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q gpu -n gpu0 -- --concurrency 1
    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q dagster -n cpu
"""

from __future__ import annotations

import dagster as dg

from . import settings
from .settings import CELERY_QUEUE_TAG, GPU_QUEUE

# op tags of the model steps: the Celery queue they are routed to
MODEL_STEP_TAGS = {CELERY_QUEUE_TAG: GPU_QUEUE}


def batch_executor() -> dg.ExecutorDefinition | None:
    """The Celery executor when a broker is configured, else None (Dagster's default)."""
    broker = settings.celery_broker()
    if not broker:
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": broker, "backend": settings.celery_backend()}, name="celery_gpu_queue")

"""What a local run's forkserver imports once, so that its step processes start with it.

Each step of a local run is forked from one forkserver per run (``executors.local_executor``).
Whatever the forkserver imported, every step gets for free; whatever it did not, each step
imports again. Measured on 2 cores: the instance's SQLite storage modules 0.6 s, torch 1.6 s,
pyannote.audio (Lightning, torchmetrics) 4.5 s on top, sentence-transformers 0.2 s. A batch
run has four model steps that need torch, two of them pyannote, and every step needs the
storage, so a batch run imports them here once instead of up to eleven times.

Only imports: no model is loaded, no thread pool started (torch starts its threads on the
first operation, in the step), no connection opened, so forking stays safe. A module that
cannot be imported is skipped (an optional extra that is not installed); the step that needs
it then says so itself.

- ``opentranscribe_pipeline.preload``: the code location and the instance's storage (every
  local job).
- ``opentranscribe_pipeline.preload.models``: that plus the model stack (``transcribe_batch``).
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings

from .. import settings


def configure_step_logging() -> None:
    """The step processes of a CLI run log the project's own lines to stderr as the CLI does
    (``settings.cli_log_level``, which the CLI gives its children). Configured here, the first
    code of the forkserver every local step is forked from, rather than when
    ``definitions`` is imported: that module is a library too (tests, notebooks, the UI's
    code server import it) and must not configure logging."""
    if level := settings.cli_log_level():
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


configure_step_logging()

# Importing pyannote.audio writes PYANNOTE_METRICS_ENABLED=true when it is unset; the
# pipeline's default is off (settings.pyannote_metrics_enabled), so say it before the import.
# The one write outside an entry point's main(), and why: this module is what the forkserver
# process runs first (its entry point in effect), pyannote keeps its switch nowhere but this
# variable, and the forkserver may be started by anyone (Dagster's executor, a test) with the
# variable unset, so no parent can be relied on to have put it in the forkserver's environment.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

BASE = (
    "opentranscribe_pipeline.definitions",
    "dagster._core.storage.sqlite_storage",  # DagsterInstance.from_config: 0.6 s a step
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
)


def import_all(modules) -> list[str]:
    """Import what can be imported; returns the names that could not."""
    missing = []
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. pyannote's torchcodec warning: the step shows its own
                importlib.import_module(name)
        except Exception:  # noqa: BLE001  an optional extra missing, or broken: the step will say
            missing.append(name)
    return missing


import_all(BASE)

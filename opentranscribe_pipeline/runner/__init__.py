"""Runs of the code location's jobs, started from a terminal but made like the UI makes them.

A run created with ``JobDefinition.execute_in_process`` has no code-location origin: the UI
shows it under no job, on no timeline and in no partition view, and the in-process executor
never asks the instance for a ``gpu`` pool slot. The CLI therefore goes the way
``dagster job launch`` does: it loads the code location named by ``workspace.yaml`` (a code
server subprocess, the same one ``dagster dev`` starts), creates the run from the remote
job (origin, snapshots, the ``.dagster/repository`` label, partition tags) and then either

- executes it here (:func:`execute`), with the job's own executor (multiprocess by default:
  model steps claim ``gpu`` slots from the instance, so two terminals, or a terminal and a
  backfill, take turns on one GPU), or
- submits it to the instance's run coordinator (:func:`submit`, ``--submit``): the daemon's
  queue with ``QueuedRunCoordinator``, and :func:`follow` waits for it.

Any job of the code location runs this way, by name, with a partition key and run config
(``transcribe_batch``, ``assign_speakers``, ``recluster_speakers``, later ``publish_batch``).

Stopping (:func:`stop_on_signals`): Ctrl-C (SIGINT) or SIGTERM while a run executes here marks
the run CANCELING, then interrupts Dagster's executor the way Dagster's own SIGINT handling
does (it forwards the termination to every step process and waits for them), so the run ends
CANCELED; :func:`execute` then raises :class:`Interrupted` and the caller's ``with`` blocks
close the code server and the forkserver. Outside a run (loading, following queued runs) the
signal raises :class:`Interrupted` at once; runs handed to the queue are canceled through the
run coordinator (:func:`cancel_submitted`).
"""

from __future__ import annotations

from .forkserver import forkserver_preload, shared_forkserver, start_forkserver, stop_forkserver
from .location import DEFINITIONS_MODULE, CodeLocation, code_location, create_run
from .runs import (
    HOST_TAG,
    PID_TAG,
    SUBMITTED_TAG,
    RunOutcome,
    daemon_alive,
    ensure_pools,
    execute,
    follow,
    follow_all,
    local_tags,
    outcome,
    run_job,
    submit,
)
from .signals import Interrupted, cancel_submitted, stop_on_signals

__all__ = [
    "DEFINITIONS_MODULE",
    "HOST_TAG",
    "PID_TAG",
    "SUBMITTED_TAG",
    "CodeLocation",
    "Interrupted",
    "RunOutcome",
    "cancel_submitted",
    "code_location",
    "create_run",
    "daemon_alive",
    "ensure_pools",
    "execute",
    "follow",
    "follow_all",
    "forkserver_preload",
    "local_tags",
    "outcome",
    "run_job",
    "shared_forkserver",
    "start_forkserver",
    "stop_forkserver",
    "stop_on_signals",
    "submit",
]

"""Executing, submitting and following runs of the code location (see :mod:`.runner`)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from .. import settings
from . import forkserver as _forkserver
from . import signals as _signals
from .location import CodeLocation, create_run

# tags naming the process that executes a run here: recover_interrupted_runs reads them
HOST_TAG = "opentranscribe/host"
PID_TAG = "opentranscribe/pid"
SUBMITTED_TAG = "opentranscribe/submitted"


@dataclass
class RunOutcome:
    """How a run ended, read back from the instance (the same for a run executed here and
    one the daemon ran)."""

    run_id: str
    status: dg.DagsterRunStatus
    failures: list = field(default_factory=list)  # STEP_FAILURE DagsterEvents

    @property
    def success(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS

    def get_step_failure_events(self) -> list:
        return self.failures


def outcome(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    run = instance.get_run_by_id(run_id)
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return RunOutcome(run_id, run.status, [r.event_log_entry.dagster_event for r in records])


def local_tags() -> dict[str, str]:
    """Tags of a run executed by this process (so a later call can recover it if we die)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def execute(loc: CodeLocation, instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunOutcome:
    """Execute ``run`` in this process with the job's executor (multiprocess: one process per
    step, pool slots claimed from the instance; or Celery / Kubernetes as configured).
    Inside :func:`stop_on_signals`, a SIGINT/SIGTERM cancels it and raises :class:`.signals.Interrupted`
    once its steps have stopped."""
    from dagster._core.execution.api import execute_run
    from dagster._utils.hosted_user_process import recon_job_from_origin

    _signals.raise_if_stopping()
    try:
        with _signals.executing(run.run_id, instance):
            execute_run(recon_job_from_origin(run.job_code_origin), run, instance, raise_on_error=False)
    finally:
        if not _forkserver.shared():
            _forkserver.stop_forkserver()
    _signals.raise_if_stopping()  # from here on the callers clean up: later signals are ignored
    return outcome(instance, run.run_id)


def submit(loc: CodeLocation, instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """Hand ``run`` to the instance's run coordinator (the daemon's queue when queued)."""
    _signals.submitted(run.run_id, instance)
    return instance.submit_run(run.run_id, loc.workspace)


def ensure_pools(instance: dg.DagsterInstance, pools=(settings.GPU_POOL, settings.SPEAKER_INDEX_POOL)) -> list[str]:
    """Create the pools' limit rows (at the instance's default limit) before runs start.

    Dagster creates them lazily when the first step claims a slot; on PostgreSQL two runs
    doing that at the same moment both insert the row, and the loser's transaction aborts
    (dagster 1.13: ``initialize_concurrency_limit_to_default`` catches the unique violation
    but reuses the aborted transaction), failing its run. Created once up front, that race
    cannot happen. Returns the pools it created; existing ones are left alone."""
    storage = instance.event_log_storage
    created = []
    for pool in pools:
        if pool in storage.get_concurrency_keys():
            continue
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except Exception:  # another process created it just now
            if pool not in storage.get_concurrency_keys():
                raise
            continue
        created.append(pool)
    return created


def daemon_alive(instance: dg.DagsterInstance, within_s: float = 120.0) -> bool:
    """Whether a run submitted now will be picked up: the coordinator launches at once, or a
    ``dagster-daemon`` has sent a heartbeat within ``within_s``."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return True
    beats = instance.get_daemon_heartbeats()
    return any(time.time() - beat.timestamp < within_s for beat in beats.values())


def follow(
    instance: dg.DagsterInstance, run_id: str, on_change=None, poll_s: float = 1.0, timeout_s: float | None = None
) -> RunOutcome:
    """Wait until the run ends; ``on_change(status)`` on each status change."""
    last = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        run = instance.get_run_by_id(run_id)
        if run.status != last:
            last = run.status
            if on_change:
                on_change(run.status)
        if run.is_finished:
            return outcome(instance, run_id)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run.status.value} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def run_job(
    loc: CodeLocation,
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    run_config: Mapping | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    submit_to_queue: bool = False,
    on_change=None,
) -> RunOutcome:
    """Create a run of ``job_name`` from the code location, run it (here, or through the
    run coordinator and wait), and say how it ended."""
    extra = {SUBMITTED_TAG: "true"} if submit_to_queue else local_tags()
    run = create_run(
        loc, instance, job_name, run_config=run_config, partition_key=partition_key, tags={**(tags or {}), **extra}
    )
    if submit_to_queue:
        submit(loc, instance, run)
        return follow(instance, run.run_id, on_change=on_change)
    return execute(loc, instance, run)


def follow_all(
    instance: dg.DagsterInstance, runs: Mapping[str, str], on_change=None, poll_s: float = 1.0
) -> dict[str, RunOutcome]:
    """Wait until every run of ``runs`` (label -> run id) ends; ``on_change(label, status)``
    on each status change (the CLI prints one line per batch)."""
    last: dict[str, dg.DagsterRunStatus] = {}
    done: dict[str, RunOutcome] = {}
    while len(done) < len(runs):
        for label, run_id in runs.items():
            if label in done:
                continue
            run = instance.get_run_by_id(run_id)
            if last.get(label) != run.status:
                last[label] = run.status
                if on_change:
                    on_change(label, run.status)
            if run.is_finished:
                done[label] = outcome(instance, run_id)
        if len(done) < len(runs):
            time.sleep(poll_s)
    return done

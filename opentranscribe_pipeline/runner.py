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

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from . import settings

DEFINITIONS_MODULE = "opentranscribe_pipeline.definitions"
# tags naming the process that executes a run here: recover_interrupted_runs reads them
HOST_TAG = "opentranscribe/host"
PID_TAG = "opentranscribe/pid"
SUBMITTED_TAG = "opentranscribe/submitted"


def _load_target(workspace_file: str | None):
    from dagster._core.workspace.load_target import ModuleTarget, WorkspaceFileTarget

    path = workspace_file or settings.workspace_file()
    if path and Path(path).is_file():
        return WorkspaceFileTarget(paths=[str(Path(path).resolve())])
    # no workspace.yaml here: the module it names, under the same (default) location name
    return ModuleTarget(module_name=DEFINITIONS_MODULE, attribute=None, working_directory=None, location_name=None)


@dataclass
class CodeLocation:
    """The loaded code location: what a run is created from."""

    workspace: object  # WorkspaceRequestContext
    location: object  # dagster CodeLocation
    repository: object  # RemoteRepository

    @property
    def name(self) -> str:
        return self.location.name


@contextlib.contextmanager
def code_location(
    instance: dg.DagsterInstance, workspace_file: str | None = None, verbose: bool = False
) -> Iterator[CodeLocation]:
    """The one code location of ``workspace.yaml`` (``OPENTRANSCRIBE_WORKSPACE``), served by a
    code server subprocess for as long as the context is open."""
    from dagster._core.workspace.context import WorkspaceProcessContext

    with WorkspaceProcessContext(
        instance, _load_target(workspace_file), code_server_log_level="INFO" if verbose else "WARNING"
    ) as process_context:
        workspace = process_context.create_request_context()
        names = list(workspace.code_location_names)
        if len(names) != 1:
            raise RuntimeError(f"workspace must hold exactly one code location, found {names}")
        if workspace.has_code_location_error(names[0]):
            raise RuntimeError(
                f"code location {names[0]!r} failed to load: {workspace.get_code_location_error(names[0])}"
            )
        location = workspace.get_code_location(names[0])
        [repository] = location.get_repositories().values()
        yield CodeLocation(workspace, location, repository)


def create_run(
    loc: CodeLocation,
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    run_config: Mapping | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.DagsterRun:
    """A NOT_STARTED run of ``job_name`` created from the remote job, as the UI creates one."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.storage.tags import PARTITION_NAME_TAG

    selector = JobSubsetSelector(
        location_name=loc.location.name, repository_name=loc.repository.name, job_name=job_name, op_selection=None
    )
    remote_job = loc.location.get_job(selector)
    run_config = dict(run_config or {})
    all_tags = {**remote_job.tags, **(tags or {})}
    if partition_key is not None:
        all_tags[PARTITION_NAME_TAG] = partition_key
    plan = loc.location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=remote_job.resolved_op_selection,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=all_tags,
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=loc.repository.asset_graph,
    )


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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM while :func:`stop_on_signals` was in force; the runs executing here
    were canceled (``canceled``)."""

    def __init__(self, signum: int, canceled: list[str] | None = None):
        self.signum = signum
        self.canceled = list(canceled or [])
        super().__init__(signal.Signals(signum).name)


# runs executing in this process now (run id -> instance), runs handed to the queue by it, the
# signal that asked this process to stop (None: none), the runs canceled because of it
_executing: dict[str, dg.DagsterInstance] = {}
_submitted: dict[str, dg.DagsterInstance] = {}
_stop: dict = {"signum": None, "canceled": [], "raised": False}
_stop_lock = threading.Lock()


def _request_interrupt() -> None:
    """What Dagster's own SIGINT handler does while a run executes (``capture_interrupts``):
    raise the flag its executor polls; the multiprocess executor then tells every step
    process to stop, waits for them and ends the run (CANCELED when it is CANCELING). The
    flag is private to Dagster (pinned, 1.13): without it, a real SIGINT to this process."""
    try:
        from dagster._utils.interrupts import _received_interrupt

        _received_interrupt["received"] = True
    except ImportError:  # pragma: no cover - another Dagster
        os.kill(os.getpid(), signal.SIGINT)


def _stopping(signum: int) -> None:
    """The first SIGINT/SIGTERM: mark the runs executing here CANCELING (before the executor
    sees the interrupt: Dagster ends an interrupted run CANCELED only when it finds it so),
    then interrupt them. Runs on a thread, never inside a signal handler (the main thread may
    hold a storage transaction). Later signals change nothing."""
    with _stop_lock:
        if _stop["signum"] is not None:
            return
        _stop["signum"] = signum
        for run_id, instance in list(_executing.items()):
            try:
                run = instance.get_run_by_id(run_id)
                if run is not None and not run.is_finished:
                    instance.report_run_canceling(run, message=f"{signal.Signals(signum).name} received: canceling")
                    _stop["canceled"].append(run_id)
            except Exception:  # the interrupt below still stops it (then marked failed)
                pass
        if _executing:
            _request_interrupt()


def _on_signal(signum: int, frame) -> None:
    """The Python-level handler of SIGINT and SIGTERM inside :func:`stop_on_signals` (Dagster
    replaces the SIGINT one while a run executes; the watcher thread sees both through the
    wake-up fd and cancels the run). With no run executing here, stop now; once stopping,
    later signals are ignored so that the clean-up (code server, forkserver) finishes. No lock
    here: the main thread may hold it."""
    if _executing or _stop.get("raised"):
        return
    _stop["signum"] = _stop["signum"] or signum
    _stop["raised"] = True
    raise Interrupted(_stop["signum"], _stop["canceled"])


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in (signal.SIGINT, signal.SIGTERM):
                threading.Thread(target=_stopping, args=(signum,), daemon=True).start()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM stop what this process started (see the module doc) and
    raise :class:`Interrupted` in the main thread. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="stop-on-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(old_fd)
        os.close(write_fd)  # the watcher reads EOF and ends
        watcher.join(2)
        os.close(read_fd)
        _stop.update(signum=None, canceled=[], raised=False)
        _submitted.clear()


def cancel_submitted() -> list[str]:
    """Cancel the runs this process handed to the queue that have not finished (the run
    coordinator dequeues a queued one, asks the launcher to terminate a started one)."""
    canceled = []
    for run_id, instance in list(_submitted.items()):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            with contextlib.suppress(Exception):
                if instance.run_coordinator.cancel_run(run_id):
                    canceled.append(run_id)
    return canceled


def execute(loc: CodeLocation, instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunOutcome:
    """Execute ``run`` in this process with the job's executor (multiprocess: one process per
    step, pool slots claimed from the instance; or Celery / Kubernetes as configured).
    Inside :func:`stop_on_signals`, a SIGINT/SIGTERM cancels it and raises :class:`Interrupted`
    once its steps have stopped."""
    from dagster._core.execution.api import execute_run
    from dagster._utils.hosted_user_process import recon_job_from_origin

    if _stop["signum"] is not None:
        _stop["raised"] = True
        raise Interrupted(_stop["signum"], _stop["canceled"])
    _executing[run.run_id] = instance
    try:
        execute_run(recon_job_from_origin(run.job_code_origin), run, instance, raise_on_error=False)
    finally:
        with _stop_lock:
            _executing.pop(run.run_id, None)
        if not _shared_forkserver:
            stop_forkserver()
    if _stop["signum"] is not None:
        _stop["raised"] = True  # from here on the callers clean up: later signals are ignored
        raise Interrupted(_stop["signum"], _stop["canceled"])
    return outcome(instance, run.run_id)


# True inside ``shared_forkserver``: the runs executed here leave the forkserver running
_shared_forkserver = False


def forkserver_preload(preload: str) -> list[str]:
    """What Dagster's multiprocess executor hands ``set_forkserver_preload`` for a job whose
    executor names ``preload`` (it puts its own module first)."""
    return ["dagster._core.executor.multiprocess", preload]


def start_forkserver(preload: str) -> None:
    """Start this process's multiprocessing forkserver now, importing ``preload`` (see
    ``executors.local_executor``), without waiting for it: the forkserver imports while this
    process goes on (loading the code location, creating the run), and the first step forked
    from it waits only for what is left. The environment is the one of this moment."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(forkserver_preload(preload))
    forkserver.ensure_running()


@contextlib.contextmanager
def shared_forkserver(preload: str | None) -> Iterator[None]:
    """One forkserver for every run executed here inside the block (the CLI's batch run,
    then its clustering and publishing runs), started at once with ``preload`` (the batch
    run's, the widest), and stopped when the block ends. Each run would otherwise start its
    own and wait for its imports. ``None``: nothing is shared (the runs' steps are not forked
    here: ``--submit``, Celery, Kubernetes)."""
    global _shared_forkserver
    if preload is None:
        yield
        return
    stop_forkserver()  # one started earlier in this process has the environment of then
    start_forkserver(preload)
    _shared_forkserver = True
    try:
        yield
    finally:
        _shared_forkserver = False
        stop_forkserver()


def stop_forkserver() -> None:
    """Stop this process's multiprocessing forkserver (the local executor's, see
    ``executors.local_executor``), so that the next run here starts a new one: a forkserver
    keeps the environment and imports of the moment it started, which a later run in the same
    process (a test, a notebook) must not inherit.

    Closing its "alive" pipe asks it to exit (what ``multiprocessing`` does), but with torch
    imported its interpreter teardown takes 1-3 s on 2 cores, which a run would wait for; it
    holds nothing but imported modules (its step processes have ended with their run), so it
    is terminated instead (SIGTERM: no handler of its own)."""
    import signal
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    lock = getattr(server, "_lock", None)
    if lock is None:
        return
    with lock:
        pid = server._forkserver_pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        server._stop_unlocked()  # closes the pipe, reaps it, forgets its address


def submit(loc: CodeLocation, instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """Hand ``run`` to the instance's run coordinator (the daemon's queue when queued)."""
    _submitted[run.run_id] = instance
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

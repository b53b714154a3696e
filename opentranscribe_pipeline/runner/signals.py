"""Stopping on Ctrl-C or SIGTERM: the runs executing here end CANCELED, then the caller's
``with`` blocks close the code server and the forkserver (see :mod:`.runner`'s doc).

The state below is this process's: the runs executing here now (:func:`.runs.execute` adds
and removes them), the runs it handed to the queue, and the signal that asked it to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import dagster as dg


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


def raise_if_stopping() -> None:
    """Raise :class:`Interrupted` when a signal asked this process to stop (the callers then
    clean up: later signals are ignored)."""
    if _stop["signum"] is not None:
        _stop["raised"] = True
        raise Interrupted(_stop["signum"], _stop["canceled"])


@contextlib.contextmanager
def executing(run_id: str, instance: dg.DagsterInstance) -> Iterator[None]:
    """Within: the run is executing here, so a signal marks it CANCELING and interrupts it."""
    _executing[run_id] = instance
    try:
        yield
    finally:
        with _stop_lock:
            _executing.pop(run_id, None)


def submitted(run_id: str, instance: dg.DagsterInstance) -> None:
    """The run was handed to the queue by this process (:func:`cancel_submitted` cancels it)."""
    _submitted[run_id] = instance


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

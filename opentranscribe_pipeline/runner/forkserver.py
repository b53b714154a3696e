"""One multiprocessing forkserver per command: the local executor forks every step process
from it (``executors.local_executor``), so what it imported once every step finds imported."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# True inside ``shared_forkserver``: the runs executed here leave the forkserver running
_shared_forkserver = False


def shared() -> bool:
    """Whether the runs executed here now leave the forkserver running (inside :func:`shared_forkserver`)."""
    return _shared_forkserver


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

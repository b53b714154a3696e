"""What every command family shares: the exit codes, the warehouse and instance a command
opens, the options several commands take, and the environment of the processes a command
starts.

Exit codes, once for every command: 0 done; 1 the pipeline itself broke (a run or a check
failed, a part of a table unreadable); 2 unusable arguments or storage (a usage error, an
unknown name, a storage error), never because some input files were bad.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import settings

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2  # unusable arguments or storage


def s3_options():
    """S3 settings of the warehouse and sources (botocore's ``AWS_*`` variables)."""
    from ..storage import S3Options

    return S3Options.from_env()


def open_warehouse(root: str):
    """The warehouse at ``root`` (a local path or ``s3://bucket/prefix``)."""
    from ..storage import Warehouse

    return Warehouse(root, s3_options())


def dagster_home() -> Path:
    """DAGSTER_HOME, or ``./.dagster`` seeded with ``./dagster.yaml`` (what ``make`` uses)."""
    path = settings.dagster_home() or Path.cwd() / ".dagster"
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "dagster.yaml").exists() and Path("dagster.yaml").exists():
        shutil.copy("dagster.yaml", path / "dagster.yaml")
    return path


def open_instance():
    """The Dagster instance of :func:`dagster_home`, opened from its folder: with DAGSTER_HOME
    unset, ``./.dagster`` is named explicitly rather than written into the environment (the
    code server and the step processes receive the instance's reference from Dagster)."""
    import dagster as dg

    home = dagster_home()
    if settings.dagster_home() is not None:
        return dg.DagsterInstance.get()  # Dagster's own checks of the variable (absolute, a folder)
    return dg.DagsterInstance.from_config(str(home))


def run_log_level(args) -> str:
    """Dagster's console log: everything with ``-v``; otherwise nothing, because a failed
    step is logged with its stack trace: the CLI prints one line per failed step itself
    (``cli.instance.failed_steps``) and bad input files are in the summary."""
    return "INFO" if getattr(args, "verbose", False) else "CRITICAL"


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true")


# -- the environment of the processes a command starts ------------------------------------------
# the pipeline hands pyannote in-memory arrays, so its torchcodec warning (no system FFmpeg) is noise
QUIET_PYANNOTE_IO = "ignore::UserWarning:pyannote.audio.core.io"
ORCHESTRATING_COMMANDS = ("process", "speakers")


def child_environment(command: str, verbose: bool) -> dict[str, str]:
    """The variables the processes a command starts read (the code server, the forkserver and
    the step processes of its runs): built here from the command line, as a dict.

    - ``PYANNOTE_METRICS_ENABLED`` (unless set): ``0``, said before anything imports pyannote,
      which writes ``true`` there on import when it is unset.
    - ``OPENTRANSCRIBE_LOG_LEVEL``: the step processes log the project's lines as this one does.
    - without ``-v``, for the commands that start runs: ``OPENTRANSCRIBE_QUIET_MODEL_LOGS`` and
      pyannote's torchcodec warning ignored through ``PYTHONWARNINGS`` (it is raised when
      pyannote is imported, before any of our code runs; this process only orchestrates and
      never imports the model libraries, which would cost 6 s a call just to quiet them).
    """
    env: dict[str, str] = {}
    if "PYANNOTE_METRICS_ENABLED" not in os.environ:
        env["PYANNOTE_METRICS_ENABLED"] = "0"
    env["OPENTRANSCRIBE_LOG_LEVEL"] = "INFO" if verbose else "WARNING"
    if not verbose and command in ORCHESTRATING_COMMANDS:
        env["OPENTRANSCRIBE_QUIET_MODEL_LOGS"] = "1"
        current = settings.env("PYTHONWARNINGS", "")
        if QUIET_PYANNOTE_IO not in current:
            env["PYTHONWARNINGS"] = f"{current},{QUIET_PYANNOTE_IO}" if current else QUIET_PYANNOTE_IO
    return env


@contextlib.contextmanager
def lent_to_children(env: dict[str, str]) -> Iterator[None]:
    """``env`` in force while the command runs, then ``os.environ`` exactly as it was found
    (``main()`` called in-process, by a test or a notebook, leaves no trace).

    The one place the CLI touches the environment, and only for its children: Dagster starts
    the code server with a copy of ``os.environ`` and multiprocessing's forkserver inherits it;
    neither takes an environment of its own, so the variables are lent for the command's
    duration rather than passed."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

"""Issue 29, defect 5 (Ctrl-C part): stopping `opentranscribe process` stops what it started.

A real `process` on a one-file drop gets SIGTERM (or a terminal's Ctrl-C) once its batch run
has started a step: it exits 143 (130), the run is CANCELED in the instance, and within 10 s no process of it is left (its
step processes, the forkserver, the code server: found by a marker in their environment,
which every descendant inherits, orphans included)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from .conftest import OPENTRANSCRIBE, ROOT, SAMPLE_DROP, write_instance_yaml

MARKER_VAR = "OPENTRANSCRIBE_INTERRUPT_TEST"


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARKER_VAR=marker`` (Linux /proc)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, a zombie, or not ours
            continue
    return found


def wait_for_step_start(home: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    """The id of the `transcribe_batch` run once one of its steps has started."""
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="transcribe_batch"))
            for run in runs:
                started = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
                if started:
                    return run.run_id
            time.sleep(0.5)
    raise AssertionError("no step started in time")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_stopping_cancels_the_run_and_leaves_no_process_behind(tmp_path, how):
    """``sigterm``: SIGTERM to the CLI alone (a supervisor, ``kill``); ``ctrl-c``: SIGINT to
    its whole process group, as a terminal sends it."""
    drop = tmp_path / "small"
    drop.mkdir()
    shutil.copy(SAMPLE_DROP / "call-07.flac", drop / "call-07.flac")
    home = write_instance_yaml(tmp_path / "home")
    marker = uuid.uuid4().hex
    env = {**os.environ, "DAGSTER_HOME": str(home), MARKER_VAR: marker}
    proc = subprocess.Popen(
        [*OPENTRANSCRIBE, "process", str(drop), "--warehouse", str(tmp_path / "wh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the teardown can remove leftovers
    )
    try:
        run_id = wait_for_step_start(home, proc)
        time.sleep(1.0)
        running = processes_with(marker)
        assert len(running) >= 3, running  # the CLI, its code server, the forkserver and steps
        signum = signal.SIGTERM if how == "sigterm" else signal.SIGINT
        if how == "sigterm":
            proc.send_signal(signum)
        else:
            os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, out + err
        assert f"interrupted ({signum.name})" in err and run_id in err, err
        # on Ctrl-C, Dagster's orphan watcher (a child of the code server) gets the terminal's
        # SIGINT too and prints its KeyboardInterrupt: no other traceback
        # (two of them can interleave their lines: a chunk holding only the header is one of those)
        chunks = [t for t in err.split("Traceback")[1:] if t.replace("(most recent call last):", "").strip()]
        assert all("watch_orphans" in t for t in chunks), err
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.CANCELED, run.status
            # nothing after it: no clustering or publishing run was started
            assert [r.job_name for r in instance.get_runs()] == ["transcribe_batch"]
        deadline = time.monotonic() + 10
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = processes_with(marker)
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left if Path(f"/proc/{p}").exists()]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

"""What a local run's forkserver imports for its step processes (``opentranscribe_pipeline.preload``):
the jobs ask for it, and a process forked from such a forkserver finds the code location, the
instance's storage and (for ``transcribe_batch``) the model stack already imported, with
pyannote's telemetry off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from opentranscribe_pipeline import executors
from opentranscribe_pipeline.definitions import defs

from .conftest import ROOT

STORAGE = "dagster._core.storage.sqlite_storage"
MODEL_STACK = ("torch", "pyannote.audio", "whisperx", "opentranscribe_pipeline.speech.diarize")


def forkserver_child_sees(preload: str, tmp_path) -> dict:
    """Start a forkserver that preloads ``preload`` (as Dagster's multiprocess executor does
    with ``preload_modules``) and report what a child forked from it has imported."""
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, multiprocessing, os, sys

            WATCH = {[STORAGE, "opentranscribe_pipeline.definitions", *MODEL_STACK]!r}

            def report(queue):
                queue.put({{
                    "imported": [m for m in WATCH if m in sys.modules],
                    "metrics": os.environ.get("PYANNOTE_METRICS_ENABLED"),
                }})

            if __name__ == "__main__":
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([{preload!r}])
                queue = ctx.Queue()
                child = ctx.Process(target=report, args=(queue,))
                child.start()
                result = queue.get(timeout=300)
                child.join()
                print(json.dumps({{"child": result, "parent": [m for m in WATCH if m in sys.modules]}}))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYANNOTE_METRICS_ENABLED"}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def executor_preload(job_name: str) -> list[str]:
    executor = defs.resolve_job_def(job_name).executor_def
    config = executor.config_schema.resolve_config({}).value["config"]  # configured values, defaults applied
    return config["start_method"]["forkserver"]["preload_modules"]


def test_jobs_ask_their_forkserver_for_the_right_imports(monkeypatch):
    monkeypatch.delenv("OPENTRANSCRIBE_EXECUTOR", raising=False)
    monkeypatch.delenv("OPENTRANSCRIBE_CELERY_BROKER", raising=False)
    # the batch run has the model steps: its forkserver imports the model stack
    assert executors.batch_executor().name == executors.LOCAL_EXECUTOR
    batch = executors.batch_executor().config_schema.resolve_config({}).value["config"]
    assert batch["start_method"]["forkserver"]["preload_modules"] == [executors.PRELOAD_MODELS]
    # jobs without a model step only need the code location and the storage
    light = [
        job.name
        for job in defs.resolve_all_job_defs()
        if job.name != "transcribe_batch" and job.executor_def.name == executors.LOCAL_EXECUTOR
    ]
    assert set(light) == {"assign_speakers", "publish_batch", "recluster_speakers", "summarize_archive"}
    for name in light:
        assert executor_preload(name) == [executors.PRELOAD], name
    assert executor_preload("transcribe_batch") == [executors.PRELOAD_MODELS]


@pytest.mark.slow
def test_a_step_forked_from_the_model_forkserver_finds_the_model_stack_imported(tmp_path):
    seen = forkserver_child_sees(executors.PRELOAD_MODELS, tmp_path)
    assert set(seen["child"]["imported"]) == {STORAGE, "opentranscribe_pipeline.definitions", *MODEL_STACK}
    # imported in the forkserver, not in the parent that started it (the CLI stays light)
    assert "torch" not in seen["parent"]
    # pyannote.audio sets its telemetry on when the variable is unset; the preload says off first
    assert seen["child"]["metrics"] == "0"


def test_the_light_forkserver_does_not_import_torch(tmp_path):
    seen = forkserver_child_sees(executors.PRELOAD, tmp_path)
    assert STORAGE in seen["child"]["imported"]
    assert "opentranscribe_pipeline.definitions" in seen["child"]["imported"]
    assert "torch" not in seen["child"]["imported"]  # 1.6 s + 4.5 s a fork that no light step needs
    assert "pyannote.audio" not in seen["child"]["imported"]


SHARED_PROBE = """
import json, multiprocessing, os
from multiprocessing import forkserver

from opentranscribe_pipeline import executors, runner


def report(queue):
    queue.put({"ppid": os.getppid(), "probe": os.environ.get("PROBE")})


def child(ctx):
    queue = ctx.Queue()
    proc = ctx.Process(target=report, args=(queue,))
    proc.start()
    seen = queue.get(timeout=300)
    proc.join()
    return seen


if __name__ == "__main__":
    ctx = multiprocessing.get_context("forkserver")
    os.environ["PROBE"] = "when the block began"
    out = {}
    with runner.shared_forkserver(executors.PRELOAD):
        out["server"] = forkserver._forkserver._forkserver_pid
        out["shared"] = runner.forkserver.shared()
        os.environ["PROBE"] = "changed inside the block"
        for run in ("first", "second"):
            # what each run's multiprocess executor does before forking its steps
            ctx.set_forkserver_preload(runner.forkserver_preload(executors.PRELOAD))
            out[run] = child(ctx)
    out["after"] = forkserver._forkserver._forkserver_pid
    try:
        os.kill(out["server"], 0)
        out["server_alive"] = True
    except ProcessLookupError:
        out["server_alive"] = False
    out["later"] = child(ctx)  # a run after the block starts its own forkserver
    runner.stop_forkserver()
    print(json.dumps(out))
"""


def test_the_cli_runs_share_one_forkserver_started_first_and_stopped_after(tmp_path):
    """``runner.shared_forkserver`` (the CLI's ``process``): the forkserver starts when the
    block begins, with that moment's environment; the runs inside fork their steps from it
    instead of each starting its own; when the block ends it is gone (terminated and reaped)
    and a later run starts a fresh one with the environment of then."""
    script = tmp_path / "shared.py"
    script.write_text(SHARED_PROBE)
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["server"] is not None and seen["shared"] is True
    assert seen["first"]["ppid"] == seen["second"]["ppid"] == seen["server"]
    assert seen["first"]["probe"] == seen["second"]["probe"] == "when the block began"
    assert seen["after"] is None and seen["server_alive"] is False
    assert seen["later"]["ppid"] != seen["server"]
    assert seen["later"]["probe"] == "changed inside the block"


def test_shared_forkserver_none_starts_nothing():
    from multiprocessing import forkserver

    from opentranscribe_pipeline import runner

    runner.stop_forkserver()
    with runner.shared_forkserver(None):
        assert runner.forkserver.shared() is False
        assert getattr(forkserver._forkserver, "_forkserver_pid", None) is None

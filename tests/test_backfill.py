"""A backfill as an operator launches it: several batch partitions of `transcribe_batch`,
queued by the shipped dagster.yaml's run coordinator and run by a real `dagster-daemon` with
the code location loaded from workspace.yaml."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from .conftest import ROOT, register_one_file_batches, shipped_instance

BIN = Path(sys.executable).parent
GPU_STEPS = ("transcribe", "diarize", "translate", "embed_chunks")  # the steps in the gpu pool


def step_spans(instance, run_id) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for rec in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}):
        target = starts if rec.dagster_event.event_type_value == "STEP_START" else ends
        target[rec.step_key] = rec.timestamp
    return {k: (starts[k], ends[k]) for k in starts if k in ends}


def transcripts_metadata(instance, run_id) -> dict:
    [rec] = [
        r
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if r.dagster_event.asset_key == dg.AssetKey("transcripts")
    ]
    return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


@pytest.mark.slow
def test_backfill_of_batch_partitions_runs_through_the_daemon(tmp_path):
    # the daemon on SQLite instance storage, what `make dev` gives an operator (PostgreSQL's
    # full batch runs: Celery in test_celery.py and the CLI in test_cli.py)
    home = shipped_instance(tmp_path / "home")
    root = tmp_path / "warehouse"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OPENTRANSCRIBE_WAREHOUSE": str(root),
        "OPENTRANSCRIBE_INCOMING": "",  # the drop sensor skips: only the backfill starts batch runs
    }
    wh, batch_ids = register_one_file_batches(tmp_path, home, root)

    launched = subprocess.run(
        [BIN / "dagster", "job", "backfill", "-w", "workspace.yaml", "-j", "transcribe_batch"]
        + ["--partitions", ",".join(batch_ids), "--noprompt"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert "Launched backfill" in launched.stdout

    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "daemon.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.time() + 600
            while True:
                runs = instance.get_runs(dg.RunsFilter(job_name="transcribe_batch"))
                busy = instance.get_runs(
                    dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
                )  # also speaker assignments started by the sensor: let them finish
                if len(runs) == 2 and all(r.is_finished for r in runs) and not busy:
                    break
                assert time.time() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(2)
            assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
            assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(batch_ids)
            assert len({r.tags["dagster/backfill"] for r in runs}) == 1

            # each run loaded the model once, for its own batch's file
            for r in runs:
                md = transcripts_metadata(instance, r.run_id)
                assert md["files_transcribed_this_run"] == 1 and md["model_load_s"] > 0

            # the gpu pool (limit 1): no model step of one run overlaps one of the other
            spans = [step_spans(instance, r.run_id) for r in runs]
            for a in GPU_STEPS:
                for b in GPU_STEPS:
                    (s1, e1), (s2, e2) = spans[0][a], spans[1][b]
                    assert e1 <= s2 or e2 <= s1, (a, b, spans)
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()

    words = wh.scan("words")
    assert sorted(words["batch_id"].unique()) == sorted(batch_ids)
    assert words.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    assert words["speaker"].null_count() == 0
    assert wh.scan("media").filter(pl.col("status") == "ok").height == 2

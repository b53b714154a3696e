"""Runs started by `opentranscribe process` are ordinary runs of the code location: found
by job name and by partition through the instance API, with the origin and repository
label the UI files them under, and their model steps take `gpu` pool slots, so two
terminals against one pool limit of 1 take turns on the device."""

import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from .conftest import ROOT, SAMPLE_DROP, shipped_instance
from .test_backfill import GPU_STEPS, step_spans

OPENTRANSCRIBE = [sys.executable, "-m", "opentranscribe_pipeline.cli"]
LOCATION = "opentranscribe_pipeline.definitions"  # workspace.yaml's python_module


def start_daemon(tmp_path, home):
    """The daemon that dequeues submitted runs; its sensors look at an empty warehouse."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OPENTRANSCRIBE_WAREHOUSE": str(tmp_path / "daemon-warehouse"),
        "OPENTRANSCRIBE_INCOMING": "",
    }
    bin_dir = os.path.dirname(sys.executable)
    return subprocess.Popen(
        [os.path.join(bin_dir, "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "daemon.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def start_cli(tmp_path, home, name: str, extra=()):
    drop = tmp_path / name
    drop.mkdir()
    (drop / "call.flac").write_bytes((SAMPLE_DROP / "call-07.flac").read_bytes())
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = open(tmp_path / f"{name}.out", "w+")
    proc = subprocess.Popen(
        [*OPENTRANSCRIBE, "process", str(drop), "--warehouse", str(tmp_path / f"w-{name}"), *extra],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, out


@pytest.mark.slow
def test_two_cli_calls_are_ordinary_runs_taking_turns_on_one_gpu_slot(tmp_path):
    home = shipped_instance(tmp_path / "home")  # gpu pool limit 1
    # one executes its run in its own process, the other hands it to the run coordinator
    # (the shipped dagster.yaml queues submitted runs: a daemon dequeues them)
    daemon = start_daemon(tmp_path, home)
    started = [start_cli(tmp_path, home, "drop-a"), start_cli(tmp_path, home, "drop-b", ["--submit"])]
    try:
        codes = [p.wait(timeout=900) for p, _ in started]
    finally:
        for p, _ in started:
            p.kill()
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    outputs = []
    for _, out in started:
        out.seek(0)
        outputs.append(out.read())
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in outputs)
    assert all("1 total, 1 ok, 0 failed, 0 skipped" in o for o in outputs)
    assert "submitted batch drop-b-0000 as run" in outputs[1] and "batch drop-b-0000: success" in outputs[1]
    assert "Executing step" not in outputs[0]  # Dagster's DEBUG lines stay off the terminal

    with dg.DagsterInstance.from_config(str(home)) as instance:
        batch_runs = instance.get_runs(filters=dg.RunsFilter(job_name="transcribe_batch"))
        assert len(batch_runs) == 2
        by_partition = {}
        for batch_id in ("drop-a-0000", "drop-b-0000"):
            [run] = instance.get_runs(
                filters=dg.RunsFilter(job_name="transcribe_batch", tags={"dagster/partition": batch_id})
            )
            by_partition[batch_id] = run
            assert run.status == dg.DagsterRunStatus.SUCCESS
            # what the UI files a run under: its code location and repository
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == LOCATION
        # the UI's per-repository filter (the label is stored with the run's tags)
        labelled = instance.get_runs(
            filters=dg.RunsFilter(
                job_name="transcribe_batch", tags={REPOSITORY_LABEL_TAG: f"__repository__@{LOCATION}"}
            )
        )
        assert len(labelled) == 2
        assert "opentranscribe/pid" in by_partition["drop-a-0000"].tags  # executed by the CLI process
        assert "opentranscribe/pid" not in by_partition["drop-b-0000"].tags  # launched by the coordinator
        # the clustering runs are ordinary runs too (the daemon's sensor may add its own)
        assign = instance.get_runs(filters=dg.RunsFilter(job_name="assign_speakers"))
        assert len(assign) >= 2 and all(r.remote_job_origin.location_name == LOCATION for r in assign)
        # the partition view: each batch's assets materialized in its partition
        mats = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("transcripts")), limit=10
        ).records
        assert sorted(m.partition_key for m in mats) == ["drop-a-0000", "drop-b-0000"]

        # model steps of the two runs never held the device at once
        spans = [
            (run.run_id, step, span)
            for run in batch_runs
            for step, span in step_spans(instance, run.run_id).items()
            if step in GPU_STEPS
        ]
        assert len(spans) == 2 * len(GPU_STEPS)
        for i, (run_a, step_a, (a0, a1)) in enumerate(spans):
            for run_b, step_b, (b0, b1) in spans[i + 1 :]:
                assert a1 <= b0 or b1 <= a0, f"{step_a} of {run_a} overlapped {step_b} of {run_b}"
        # and the slots were claimed from (and given back to) the instance's pool
        blocked = [
            r.step_key
            for run in batch_runs
            for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "blocked by limit for pool gpu" in (r.dagster_event.message or "")
        ]
        assert blocked and set(blocked) <= set(GPU_STEPS)
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.slot_count == 1 and not info.claimed_slots


def test_any_job_of_the_code_location_runs_by_name(tmp_path, monkeypatch):
    """The runner the CLI uses runs a clustering job by name, from the code location."""
    from opentranscribe_pipeline import runner
    from opentranscribe_pipeline.definitions import clustering_run_config

    home = shipped_instance(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(ROOT)
    with dg.DagsterInstance.get() as instance, runner.code_location(instance) as loc:
        result = runner.run_job(
            loc,
            instance,
            "recluster_speakers",
            run_config={
                **clustering_run_config("full"),
                "resources": {"warehouse": {"config": {"root": str(tmp_path / "empty-warehouse")}}},
            },
        )
        assert result.success, [e.step_failure_data.error.message for e in result.get_step_failure_events()]
        run = instance.get_run_by_id(result.run_id)
        assert run.job_name == "recluster_speakers" and run.remote_job_origin.location_name == LOCATION
        assert instance.get_runs(filters=dg.RunsFilter(tags={REPOSITORY_LABEL_TAG: f"__repository__@{LOCATION}"})) == [
            run
        ]
        with pytest.raises(Exception, match="no_such_job"):
            runner.create_run(loc, instance, "no_such_job")

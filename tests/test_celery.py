"""The production executor: with OPENTRANSCRIBE_CELERY_BROKER set, batch runs hand their steps
to real Celery workers over a real Redis broker; model steps go to the `gpu` queue, whose
single worker (concurrency 1, "one per device") serialises them across runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from .conftest import ROOT, register_one_file_batches, shipped_instance
from .seaweed import free_port

BIN = Path(sys.executable).parent
MODEL_STEPS = ("transcribe", "diarize", "translate", "embed_chunks")  # the gpu queue's steps


def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """OPENTRANSCRIBE_TEST_REDIS_URL, else a throwaway redis-server on a free port, else the
    local server on 6379; skipped (with the reason) when there is none."""
    if url := os.environ.get("OPENTRANSCRIBE_TEST_REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if _ping("redis://127.0.0.1:6379/15"):
            yield "redis://127.0.0.1:6379/15"
            return
        pytest.skip("no Redis: set OPENTRANSCRIBE_TEST_REDIS_URL or install redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.time() + 30
    while not _ping(url):
        assert proc.poll() is None and time.time() < deadline, "redis-server did not start"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def start_worker(name: str, queue: str, concurrency: int, config: Path, env: dict, log: Path) -> subprocess.Popen:
    cmd = [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", config, "-q", queue]
    cmd += ["-n", name, "--", "--concurrency", str(concurrency)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.postgres
def test_batch_runs_on_celery_workers_with_model_steps_on_the_gpu_queue(tmp_path, redis_url, own_postgres_db):
    # Celery as in production: on PostgreSQL instance storage (SQLite's full batch runs are the
    # shared archive's CLI run and the daemon backfill in test_backfill.py)
    home = shipped_instance(tmp_path / "home", postgres=own_postgres_db)
    root = tmp_path / "warehouse"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OPENTRANSCRIBE_WAREHOUSE": str(root),
        "OPENTRANSCRIBE_CELERY_BROKER": redis_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the worker CLI runs `celery`
    }
    wh, batch_ids = register_one_file_batches(tmp_path, home, root)

    config = tmp_path / "celery.yaml"
    config.write_text(json.dumps({"execution": {"config": {"broker": redis_url, "backend": redis_url}}}))
    logs = {"gpu": tmp_path / "gpu-worker.log", "cpu": tmp_path / "cpu-worker.log"}
    workers = [
        start_worker("gpu0", "gpu", 1, config, env, logs["gpu"]),  # one worker per device
        start_worker("cpu0", "dagster", 2, config, env, logs["cpu"]),
    ]
    try:
        deadline = time.time() + 90
        while not all("ready." in p.read_text(errors="replace") for p in logs.values()):
            assert time.time() < deadline and all(w.poll() is None for w in workers), {
                k: p.read_text(errors="replace")[-1500:] for k, p in logs.items()
            }
            time.sleep(0.5)

        runs = [
            subprocess.Popen(
                [BIN / "dagster", "job", "execute", "-m", "opentranscribe_pipeline.definitions"]
                + ["-j", "transcribe_batch", "--tags", json.dumps({"dagster/partition": b})],
                cwd=ROOT,
                env=env,
                stdout=open(tmp_path / f"run-{b}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            for b in batch_ids
        ]
        codes = [r.wait(timeout=600) for r in runs]
        assert codes == [0, 0], (tmp_path / f"run-{batch_ids[0]}.log").read_text()[-3000:]
    finally:
        for w in workers:
            stop(w)

    # every step ran as a Celery task; model steps on the gpu worker only
    gpu_log, cpu_log = logs["gpu"].read_text(), logs["cpu"].read_text()
    # per run: transcribe, diarize, translate, embed_chunks on gpu; ingest, attribute_speakers,
    # conversation_analytics, score_quality (DNSMOS on the CPU), summarize on cpu
    assert gpu_log.count("succeeded in") == 8 and cpu_log.count("succeeded in") == 10
    with dg.DagsterInstance.from_config(str(home)) as instance:
        finished = instance.get_runs(dg.RunsFilter(job_name="transcribe_batch"))
        assert [r.status for r in finished] == [dg.DagsterRunStatus.SUCCESS] * 2
        spans = []
        for r in finished:
            queues = {}
            starts, ends = {}, {}
            for rec in instance.all_logs(r.run_id):
                ev = rec.dagster_event
                if ev is None:
                    continue
                if ev.event_type_value == "ENGINE_EVENT" and "Submitting celery task" in (rec.message or ""):
                    queues[ev.step_key] = rec.message.rsplit('"', 2)[-2]
                elif ev.event_type_value == "STEP_START":
                    starts[ev.step_key] = rec.timestamp
                elif ev.event_type_value == "STEP_SUCCESS":
                    ends[ev.step_key] = rec.timestamp
            assert queues == {
                "ingest": "dagster",
                "transcribe": "gpu",
                "diarize": "gpu",
                "attribute_speakers": "dagster",
                "translate": "gpu",
                "conversation_analytics": "dagster",
                "embed_chunks": "gpu",  # the text-embedding model step (search)
                "score_quality": "dagster",  # DNSMOS on the CPU
                "summarize": "dagster",  # MiniLM on the CPU or a remote LLM (issue 34)
            }
            spans += [(starts[s], ends[s]) for s in MODEL_STEPS]
        # one gpu worker with concurrency 1: no two model steps of the two runs at once
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    words = wh.scan("words")
    assert sorted(words["batch_id"].unique()) == sorted(batch_ids) and words["speaker"].null_count() == 0

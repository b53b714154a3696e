"""The `gpu` pool: model steps of concurrent runs never overlap under the shipped
dagster.yaml (limit 1), other steps run alongside, and the limit is a setting."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from opentranscribe_pipeline import executors
from opentranscribe_pipeline.definitions import defs

from .conftest import ROOT, shipped_instance


def test_model_steps_are_in_the_gpu_pool():
    job = defs.resolve_job_def("transcribe_batch")
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert pools == {
        "ingest": None,
        "transcribe": "gpu",
        "diarize": "gpu",
        "attribute_speakers": None,
        "translate": "gpu",  # the translation model step (issue 12)
        "conversation_analytics": None,
        "embed_chunks": "gpu",  # the text-embedding model step (search)
        "score_quality": None,  # DNSMOS on the CPU, threads bounded (issue 32)
        "summarize": None,  # MiniLM on the CPU or a remote LLM: never holds a GPU slot (issue 34)
    }
    # the steps the k8s executor asks a GPU for are the steps in the pool
    assert set(executors.MODEL_STEPS) == {name for name, pool in pools.items() if pool == "gpu"}
    assert all(
        node.definition.tags == executors.MODEL_STEP_TAGS
        for node in job.graph.nodes
        if node.name in executors.MODEL_STEPS
    )


def run_two_at_once(home, log) -> list[dict]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT), "POOL_PROBE_LOG": str(log)}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.pool_probe"], cwd=ROOT, env=env) for _ in range(2)]
    try:
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    finally:
        for p in procs:
            p.kill()
    return [json.loads(line) for line in log.read_text().splitlines()]


def overlaps(spans: list[dict]) -> bool:
    a, b = sorted(spans, key=lambda s: s["start"])
    return b["start"] < a["end"]


@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_gpu_steps_of_concurrent_runs_never_overlap_and_the_limit_is_a_setting(tmp_path, storage, request):
    # both instance storages keep their own slots (PostgreSQL's: what the daemon backfill and
    # Celery use in production; test_backfill.py runs its daemon on SQLite)
    postgres = request.getfixturevalue("own_postgres_db") if storage == "postgres" else None
    home = shipped_instance(tmp_path / "home", postgres=postgres)
    spans = run_two_at_once(home, tmp_path / "limit1.jsonl")
    gpu = [s for s in spans if s["kind"] == "gpu"]
    assert len(gpu) == 2 and not overlaps(gpu)

    # `dagster instance concurrency set gpu 2` (here through the same storage call)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 2)
    spans = run_two_at_once(home, tmp_path / "limit2.jsonl")
    gpu = [s for s in spans if s["kind"] == "gpu"]
    assert len(gpu) == 2 and overlaps(gpu)

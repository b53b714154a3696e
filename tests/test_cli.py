"""The `opentranscribe` console script: real runs recorded in a DAGSTER_HOME instance
(SQLite and PostgreSQL), the summary, crash safety under SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from opentranscribe_pipeline.storage import Warehouse

from .conftest import ROOT, SAMPLE_DROP, write_instance_yaml

OPENTRANSCRIBE = [sys.executable, "-m", "opentranscribe_pipeline.cli"]


def cli(args, home: Path, timeout=900, **popen):
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    return subprocess.run([*OPENTRANSCRIBE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def recorded_runs(home: Path):
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        partitions = instance.get_dynamic_partitions("batches")
        return [(r.job_name, r.status.value, r.tags.get("dagster/partition")) for r in runs], partitions


@pytest.mark.slow
def test_process_sample_archive_records_runs_in_sqlite_instance(tmp_path, monkeypatch):
    home = write_instance_yaml(tmp_path / "home")
    warehouse = tmp_path / "warehouse"
    proc = cli(["process", str(SAMPLE_DROP), "--warehouse", str(warehouse)], home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "8 total, 8 ok, 0 failed, 0 skipped" in out
    assert "real-time factor" in out and "words:" in out
    runs, partitions = recorded_runs(home)
    assert partitions == ["drop-2026-11-24-0000"]
    # one batch run, then the assignment of its speakers to global ids, then its exports
    assert sorted(runs) == [
        ("assign_speakers", "SUCCESS", None),
        ("publish_batch", "SUCCESS", "drop-2026-11-24-0000"),
        ("transcribe_batch", "SUCCESS", "drop-2026-11-24-0000"),
    ]
    # four synthetic voices, every per-file speaker joined to its voice (CAM++: with GE2E two
    # local speakers with under 3 s of speech kept ids of their own, as different real people
    # reach 0.90 with that little speech: README "Speakers on real voices")
    assert "18 per-file speakers, 4 distinct global speaker ids" in out
    # a second invocation registers nothing new and redoes nothing
    again = cli(["process", str(SAMPLE_DROP), "--warehouse", str(warehouse)], home)
    assert again.returncode == 0
    assert "0 new file(s) in 0 new batch(es), 8 already registered" in again.stdout
    shown = cli(["show", "--warehouse", str(warehouse)], home)
    assert "words" in shown.stdout and "Good morning" in shown.stdout
    # the query commands answer from the files a lookup names
    town_hall = cli(["query", "transcript", "town hall 06.mp4", "--warehouse", str(warehouse), "--format", "csv"], home)
    assert town_hall.returncode == 0, town_hall.stderr[-2000:]
    assert "library" in town_hall.stdout.lower() and town_hall.stdout.startswith("media_id,")
    talk = cli(["query", "talk-time", "--warehouse", str(warehouse), "--format", "json"], home)
    assert talk.returncode == 0, talk.stderr[-2000:]
    assert {row["global_speaker_id"] for row in json.loads(talk.stdout)} == set(
        pl.read_parquet(f"{warehouse}/speaker_clusters/*.parquet")["global_speaker_id"]
    )
    # analysts: DuckDB reads the hive-partitioned tables as the README shows
    import duckdb

    rows = duckdb.sql(
        f"SELECT m.source_uri, s.text FROM read_parquet('{warehouse}/segments/*/*.parquet') s "
        f"JOIN read_parquet('{warehouse}/media/*/*.parquet') m USING (media_id) "
        "WHERE m.status = 'ok' AND s.text ILIKE '%library%'"
    ).fetchall()
    assert rows and all(uri.endswith("town hall 06.mp4") for uri, _ in rows)


@pytest.mark.postgres
def test_production_instance_yaml_loads_against_postgres(tmp_path, postgres_url, monkeypatch):
    from dagster import DagsterInstance

    home = tmp_path / "prod_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in {
        "DAGSTER_PG_HOST": postgres_url["host"],
        "DAGSTER_PG_USER": postgres_url["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": postgres_url["db"],
    }.items():
        monkeypatch.setenv(key, value)
    with DagsterInstance.get() as instance:
        assert instance.get_runs() is not None
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


@pytest.mark.postgres
def test_process_records_runs_in_postgres_instance(tmp_path, postgres_url):
    home = write_instance_yaml(tmp_path / "home", postgres=postgres_url)
    drop = tmp_path / "pg drop"
    drop.mkdir()
    (drop / "a.flac").write_bytes((SAMPLE_DROP / "meeting-02.flac").read_bytes())
    (drop / "bad.mp3").write_text("not audio")
    proc = cli(["process", str(drop), "--warehouse", str(tmp_path / "w")], home)
    assert proc.returncode == 0, proc.stderr[-3000:]  # a bad input is not a broken pipeline
    assert "2 total, 1 ok, 1 failed, 0 skipped" in proc.stdout
    assert "bad.mp3: not a readable media file" in proc.stdout
    runs, partitions = recorded_runs(home)
    # the batch, the assignment of its speakers, its publication (exports, search index)
    assert sorted(r[0] for r in runs) == ["assign_speakers", "publish_batch", "transcribe_batch"]
    assert {r[1] for r in runs} == {"SUCCESS"} and len(partitions) == 1


def test_missing_source_is_a_usage_error(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    proc = cli(["process", str(tmp_path / "nope"), "--warehouse", str(tmp_path / "w")], home)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_holds_each_file_exactly_once(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    warehouse = tmp_path / "warehouse"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [*OPENTRANSCRIBE, "process", str(SAMPLE_DROP), "--warehouse", str(warehouse)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    staging = warehouse / "_staging" / "transcripts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(staging.rglob("*.parquet"))) < 3:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    wh = Warehouse(str(warehouse))
    [batch_id] = wh.batch_ids("batches")
    staged = set(wh.staged("transcripts", batch_id))
    assert 3 <= len(staged) < 8
    # nothing half-written is visible: the batch's transcript tables do not exist yet
    assert wh.read_table("transcripts", batch_id) is None and wh.read_table("words", batch_id) is None
    assert wh.read_table("media", batch_id).height == 8

    rerun = cli(["process", str(SAMPLE_DROP), "--warehouse", str(warehouse)], home)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    state = wh.read_table("transcripts", batch_id)
    assert state.height == 8 and state["media_id"].n_unique() == 8
    words = wh.read_table("words", batch_id)
    assert words.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    assert words["media_id"].n_unique() == 8
    # files finished before the kill were kept, not transcribed again
    kept = state.filter(pl.col("media_id").is_in(list(staged)))
    assert (kept["processed_at"].dt.epoch("s") <= killed_at).all()
    assert not any((warehouse / "_staging").rglob("*.parquet"))


def test_code_location_loads_for_dagster_dev(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_links_in_a_local_drop_are_named_and_never_read(tmp_path):
    """A link to /etc/passwd and a link to a media file outside the drop: neither is
    registered, hashed or recorded; the CLI names both with the reason."""
    outside = tmp_path / "elsewhere.flac"
    outside.write_bytes((SAMPLE_DROP / "meeting-02.flac").read_bytes())
    drop = tmp_path / "linked drop"
    drop.mkdir()
    (drop / "a.flac").write_bytes((SAMPLE_DROP / "meeting-02.flac").read_bytes())
    (drop / "evil.wav").symlink_to("/etc/passwd")
    (drop / "outside.flac").symlink_to(outside)
    home = tmp_path / "home"
    proc = cli(["process", str(drop), "--warehouse", str(tmp_path / "w"), "--model", "packaged:tiny.en"], home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 link(s) or special file(s) not read" in proc.stdout
    assert "skipped evil.wav: symbolic link: not followed" in proc.stdout
    assert "skipped outside.flac: symbolic link: not followed" in proc.stdout
    assert "1 total, 1 ok, 0 failed, 0 skipped" in proc.stdout
    media = Warehouse(str(tmp_path / "w")).scan("media")
    assert [uri.rsplit("/", 1)[-1] for uri in media["source_uri"]] == ["a.flac"]

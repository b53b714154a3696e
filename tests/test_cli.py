"""The `opentranscribe` console script: real runs recorded in a DAGSTER_HOME instance
(SQLite and PostgreSQL), the summary, crash safety under SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from opentranscribe_pipeline.storage import Warehouse

from .conftest import (
    OPENTRANSCRIBE,
    ROOT,
    SAMPLE_DROP,
    cli_in_process,
    write_instance_yaml,
)
from .conftest import run_cli as cli


def recorded_runs(home: Path):
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        partitions = instance.get_dynamic_partitions("batches")
        return [(r.job_name, r.status.value, r.tags.get("dagster/partition")) for r in runs], partitions


@pytest.mark.slow
def test_process_sample_archive_records_runs_in_sqlite_instance(shared_archive):
    """The session's shared warehouse was made by one `opentranscribe process` of the sample
    archive (plus a silent file and two links) in a SQLite instance: what it printed and recorded."""
    home, warehouse, out = shared_archive.home, shared_archive.root, shared_archive.stdout
    assert "9 total, 9 ok, 0 failed, 0 skipped" in out
    assert "real-time factor" in out and "words:" in out
    runs, partitions = recorded_runs(home)
    assert partitions == ["drop-2026-11-24-0000"]
    # one batch run, then the assignment of its speakers to global ids, then its exports, then
    # the dashboard (archive_summary) refreshed
    assert sorted(runs) == [
        ("assign_speakers", "SUCCESS", None),
        ("publish_batch", "SUCCESS", "drop-2026-11-24-0000"),
        ("summarize_archive", "SUCCESS", None),
        ("transcribe_batch", "SUCCESS", "drop-2026-11-24-0000"),
    ]
    # four synthetic voices, every per-file speaker joined to its voice (CAM++: with GE2E two
    # local speakers with under 3 s of speech kept ids of their own, as different real people
    # reach 0.90 with that little speech: README "Speakers on real voices")
    assert "18 per-file speakers, 4 distinct global speaker ids" in out
    shown = cli_in_process(["show", "--warehouse", str(warehouse)], home)
    assert "words" in shown.stdout and "Good morning" in shown.stdout
    # the query commands answer from the files a lookup names
    town_hall = cli_in_process(
        ["query", "transcript", "town hall 06.mp4", "--warehouse", str(warehouse), "--format", "csv"], home
    )
    assert town_hall.returncode == 0, town_hall.stderr[-2000:]
    assert "library" in town_hall.stdout.lower() and town_hall.stdout.startswith("media_id,")
    talk = cli_in_process(["query", "talk-time", "--warehouse", str(warehouse), "--format", "json"], home)
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


@pytest.mark.slow
def test_second_process_of_the_same_drop_registers_and_redoes_nothing(copy_of_shared_archive):
    archive = copy_of_shared_archive
    again = cli(["process", str(archive.drop), "--warehouse", str(archive.root)], archive.home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 new file(s) in 0 new batch(es), 9 already registered" in again.stdout
    # the displayed string for an existing run: the subprocess smoke test of `show`
    shown = cli(["show", "--warehouse", str(archive.root)], archive.home)
    assert shown.returncode == 0 and "Good morning" in shown.stdout


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
        # pool slots claimed atomically (runner/slots.py), so two runs never share a gpu slot
        from opentranscribe_pipeline.runner.slots import PostgresEventLogStorage

        assert type(instance.event_log_storage) is PostgresEventLogStorage


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
    # the batch, the assignment of its speakers, its publication (exports, search index), the dashboard
    assert sorted(r[0] for r in runs) == ["assign_speakers", "publish_batch", "summarize_archive", "transcribe_batch"]
    assert {r[1] for r in runs} == {"SUCCESS"} and len(partitions) == 1


def test_missing_source_is_a_usage_error(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    proc = cli(["process", str(tmp_path / "nope"), "--warehouse", str(tmp_path / "w")], home)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


KILL_FILES = ("interview 01.wav", "meeting-02.flac", "lecture_05.ogg", "call-07.flac")


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_holds_each_file_exactly_once(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    warehouse = tmp_path / "warehouse"
    drop = tmp_path / "drop"  # four files: killed after two are staged, two left for the rerun
    drop.mkdir()
    for name in KILL_FILES:
        shutil.copy(SAMPLE_DROP / name, drop / name)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [*OPENTRANSCRIBE, "process", str(drop), "--warehouse", str(warehouse)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    staging = warehouse / "_staging" / "transcripts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(staging.rglob("*.parquet"))) < 2:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    wh = Warehouse(str(warehouse))
    [batch_id] = wh.batch_ids("batches")
    staged = set(wh.staged("transcripts", batch_id))
    n = len(KILL_FILES)
    assert 2 <= len(staged) < n
    # nothing half-written is visible: the batch's transcript tables do not exist yet
    assert wh.read_table("transcripts", batch_id) is None and wh.read_table("words", batch_id) is None
    assert wh.read_table("media", batch_id).height == n

    rerun = cli(["process", str(drop), "--warehouse", str(warehouse)], home)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    state = wh.read_table("transcripts", batch_id)
    assert state.height == n and state["media_id"].n_unique() == n
    words = wh.read_table("words", batch_id)
    assert words.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    assert words["media_id"].n_unique() == n
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


def test_links_in_a_local_drop_are_named_and_never_read(shared_archive):
    """A link to /etc/passwd and a link to a media file outside the drop (both in the shared
    drop): neither is registered, hashed or recorded; the CLI names both with the reason."""
    out = shared_archive.stdout
    assert "2 link(s) or special file(s) not read" in out
    assert "skipped evil.wav: symbolic link: not followed" in out
    assert "skipped outside.flac: symbolic link: not followed" in out
    assert "9 total, 9 ok, 0 failed, 0 skipped" in out
    media = shared_archive.wh.scan("media")
    names = sorted(uri.rsplit("/", 1)[-1] for uri in media["source_uri"])
    assert names == sorted([p.name for p in SAMPLE_DROP.iterdir()] + ["silence.flac"])
    assert not {"evil.wav", "outside.flac"} & set(names)

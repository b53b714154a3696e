"""Storage faults against the real parts: the `opentranscribe` CLI in a subprocess, a SeaweedFS
server stopped and restarted mid-step, refused credentials, bad keys, a warehouse that is a
file, a full tmpfs, truncated Parquet parts. Each test asserts the data afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from opentranscribe_pipeline.storage import Warehouse

from . import seaweed as seaweed_server
from .conftest import OPENTRANSCRIBE, ROOT, SAMPLE_DROP, mounted_tmpfs, write_instance_yaml
from .conftest import run_cli as cli

FILES = ("meeting-02.flac", "call-07.flac", "lecture_05.ogg")


def weed_dir(tmp_path: Path) -> Path:
    (tmp_path / "weed").mkdir()
    return tmp_path / "weed"


def make_drop(path: Path, files=FILES) -> Path:
    path.mkdir(parents=True)
    for name in files:
        shutil.copy(SAMPLE_DROP / name, path / name)
    return path


def assert_no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]


# what -v shows for each retry (storage/retries.py: "<what> failed (<error>), retry N in S s")
RETRY_LINE = re.compile(r"failed \(.*\), retry \d+ in \d+\.\d+ s")


def assert_not_retried(proc) -> None:
    """Run with -v: no storage call was retried (each retry is logged, as the outage test
    shows) and no error names a number of attempts."""
    retried = [line for line in proc.stderr.splitlines() if RETRY_LINE.search(line)]
    assert retried == [], retried[:5]
    assert "attempts over" not in proc.stderr


def assert_each_file_once(wh: Warehouse, batch_id: str, n: int, speech: int | None = None) -> None:
    """``n`` files, each ok; ``speech`` of them (default: all; a silent file never reaches the
    models) transcribed, diarized and with words, each once."""
    speech = n if speech is None else speech
    media = wh.read_table("media", batch_id)
    assert media.height == n and (media["status"] == "ok").all()
    for table in ("transcripts", "diarization"):
        state = wh.read_table(table, batch_id)
        ok = (state["status"] == "ok").all()
        assert state.height == speech and state["media_id"].n_unique() == speech and ok, table
    words = wh.read_table("words", batch_id)
    assert words["media_id"].n_unique() == speech
    assert words.select("media_id", "segment_id", "word_index").is_duplicated().sum() == 0
    assert wh.files_under(wh.path("_staging")) == []


# -- S3 outage ----------------------------------------------------------------------------------
def restart(server: seaweed_server.Seaweed, timeout: float = 90) -> None:
    """Start the stopped server again: same command, ports and data directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    with open(server.workdir / "weed.log", "ab") as log:
        server.proc = subprocess.Popen(
            server.proc.args, stdout=log, stderr=subprocess.STDOUT, cwd=server.workdir, env=env
        )
    client = server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not come back: {server.log_tail()}") from None
            time.sleep(0.2)


def start_and_wait_for_staging(server, bucket, drop, home, env_extra, tmp_path, table="transcripts"):
    """Start `opentranscribe process` on an S3 warehouse and return once the model step
    ``table`` has staged its first file (the step is running)."""
    env = {**os.environ, **server.env(), **env_extra, "DAGSTER_HOME": str(home)}
    out, err = open(tmp_path / "stdout", "w+"), open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen(
        [*OPENTRANSCRIBE, "process", str(drop), "--warehouse", f"s3://{bucket}/w", "-v"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )
    client = server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    deadline = time.monotonic() + 400
    while client.list_objects_v2(Bucket=bucket, Prefix=f"w/_staging/{table}/").get("KeyCount", 0) == 0:
        assert proc.poll() is None, "finished before the outage: " + (tmp_path / "stderr").read_text()[-3000:]
        assert time.monotonic() < deadline, "the step never staged a file"
        time.sleep(0.1)
    return proc, out, err


def finish(proc, out, err, timeout=600):
    proc.wait(timeout)
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


@pytest.mark.s3
@pytest.mark.slow
def test_s3_outage_mid_step_is_retried_and_the_batch_completes(tmp_path):
    """SeaweedFS stopped while transcription runs and started again 4 s later: the storage
    calls in between are retried (default budget, 30 s) and every file is done once."""
    home = write_instance_yaml(tmp_path / "home")
    drop = make_drop(tmp_path / "drop")
    server = seaweed_server.start(weed_dir(tmp_path))
    try:
        bucket = server.make_bucket()
        proc, out, err = start_and_wait_for_staging(server, bucket, drop, home, {}, tmp_path)
        server.proc.terminate()
        server.proc.wait(15)
        down = time.monotonic()
        time.sleep(4)
        restart(server)
        outage_s = time.monotonic() - down
        done = finish(proc, out, err)
        assert done.returncode == 0, done.stderr[-4000:]
        assert "3 total, 3 ok, 0 failed, 0 skipped" in done.stdout
        retried = [line for line in done.stderr.splitlines() if "opentranscribe_pipeline.storage.retries" in line]
        assert retried, "no storage call met the outage"  # -v shows each retry
        print(f"outage {outage_s:.1f} s, {len(retried)} retries logged, first: {retried[0]}")
        wh = Warehouse(f"s3://{bucket}/w", server.s3_options())
        [batch_id] = wh.batch_ids("batches")
        assert_each_file_once(wh, batch_id, len(FILES))
    finally:
        server.stop()


@pytest.mark.s3
@pytest.mark.slow
def test_storage_lost_for_good_exits_2_with_a_summary_and_no_traceback(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    drop = make_drop(tmp_path / "drop", FILES[:2])
    server = seaweed_server.start(weed_dir(tmp_path))
    try:
        bucket = server.make_bucket()
        env = {"OPENTRANSCRIBE_STORAGE_RETRY_S": "2"}
        proc, out, err = start_and_wait_for_staging(server, bucket, drop, home, env, tmp_path)
        server.proc.terminate()
        server.proc.wait(15)
        done = finish(proc, out, err)
    finally:
        server.stop()
    assert done.returncode == 2, done.stderr[-4000:]
    assert_no_traceback(done)
    assert "summary:    not available, the warehouse cannot be read" in done.stdout
    assert "batches:    1" in done.stdout
    assert f"cannot reach bucket '{bucket}' at {server.endpoint} after" in done.stderr
    assert "  storage: " in done.stderr  # the run's failed step, named as a storage failure


# -- errors that are not outages: one line each, at once ---------------------------------------
@pytest.mark.s3
def test_wrong_secret_key_is_access_denied(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    drop = make_drop(tmp_path / "drop", FILES[:1])
    right, wrong = "right-secret-7Qx2", "wrong-secret-9Zk4"
    with seaweed_server.running(weed_dir(tmp_path), access_key="ak", secret_key=right) as server:
        bucket = server.make_bucket()
        env = {**server.env(), "AWS_SECRET_ACCESS_KEY": wrong}
        proc = cli(["process", str(drop), "--warehouse", f"s3://{bucket}/w", "-v"], home, env)
        listed = server.client().list_objects_v2(Bucket=bucket)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert f"access denied to bucket '{bucket}' at {server.endpoint} (SignatureDoesNotMatch)" in proc.stderr
    assert "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in proc.stderr and "does not exist" not in proc.stderr
    assert right not in proc.stderr + proc.stdout and wrong not in proc.stderr + proc.stdout
    assert_not_retried(proc)  # not retried for the 30 s budget
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.s3
def test_dot_dot_source_key_is_rejected_at_once(tmp_path, seaweed):
    home = write_instance_yaml(tmp_path / "home")
    bucket = seaweed.make_bucket()
    seaweed.client().put_object(Bucket=bucket, Key="other/a.flac", Body=(SAMPLE_DROP / FILES[0]).read_bytes())
    source = f"s3://{bucket}/incoming/../other"
    proc = cli(["process", source, "--warehouse", str(tmp_path / "w"), "-v"], home, seaweed.env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert "invalid S3 key 'incoming/../other'" in proc.stderr and "'..' segments" in proc.stderr
    assert_not_retried(proc)  # no retries (the budget is 30 s)
    assert not (tmp_path / "w" / "batches").exists()


def test_warehouse_that_is_a_file_is_not_a_directory(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    drop = make_drop(tmp_path / "drop", FILES[:1])
    (tmp_path / "w").write_text("not a folder")
    proc = cli(["process", str(drop), "--warehouse", str(tmp_path / "w")], home)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert f"{tmp_path / 'w'} is not a directory" in proc.stderr
    assert "cannot reach" not in proc.stderr and "attempts" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unreachable_endpoint_exits_2_in_one_line(tmp_path):
    home = write_instance_yaml(tmp_path / "home")
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    env["OPENTRANSCRIBE_STORAGE_RETRY_S"] = "2"
    proc = cli(["process", str(make_drop(tmp_path / "drop", FILES[:1])), "--warehouse", "s3://b/w"], home, env)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.strip().startswith(
        "error: opening s3://b/w/: cannot reach bucket 'b' at http://127.0.0.1:9 after"
    )
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "tmpfs", "2m") as mount:
        yield mount


def test_disk_full_exits_2_naming_the_path_without_retries(tmp_path, tmpfs):
    home = write_instance_yaml(tmp_path / "home")
    drop = make_drop(tmp_path / "drop", ("interview 01.wav",))
    filler = tmpfs / "filler"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 96 * 1024))  # 96 KiB left: a manifest fits, the audio does not
    warehouse = tmpfs / "w"
    proc = cli(["process", str(drop), "--warehouse", str(warehouse), "-v"], home, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    [line] = [x for x in proc.stderr.splitlines() if "disk full" in x and x.startswith("  storage: ")]
    assert line.startswith(f"  storage: writing {warehouse / 'audio_16k'}/") and line.endswith(
        "disk full: no space left on the device (ENOSPC) (step ingest)"
    )
    assert_not_retried(proc)
    assert_no_traceback(proc)
    # what was written before stays readable; no temporary file is left behind
    wh = Warehouse(str(warehouse))
    [batch_id] = wh.batch_ids("batches")
    assert wh.read_table("batches", batch_id).height == 1
    assert os.listdir(warehouse / "_tmp") == []
    # space again: the same command finishes the batch
    filler.unlink()
    again = cli(["process", str(drop), "--warehouse", str(warehouse)], home, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 total, 1 ok" in again.stdout


# -- corrupt parts ------------------------------------------------------------------------------
SHARED_FILES, SHARED_SPEECH = 9, 8  # the shared archive: 8 sample files with speech and a silent one (no model runs)


def parts_of(archive) -> tuple[Path, Path, Warehouse, str]:
    """The drop, Dagster home, warehouse and batch of a copy of the shared processed archive."""
    wh = archive.wh
    [batch_id] = wh.batch_ids("batches")
    return archive.drop, archive.home, wh, batch_id


def truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


@pytest.mark.slow
def test_show_names_a_truncated_words_part_and_shows_the_rest(copy_of_shared_archive, tmp_path):
    _, home, wh, batch_id = parts_of(copy_of_shared_archive)
    segments = wh.read_table("segments", batch_id)
    bad = wh.table_file("words", batch_id)
    truncate(bad)
    proc = cli(["show", "--warehouse", wh.root], home, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    assert f"warning: table 'words' batch '{batch_id}': cannot read {bad}" in proc.stderr
    assert "(1 part(s) unreadable)" in proc.stdout
    assert f"segments             {segments.height:8d} rows" in proc.stdout
    assert f"media                {SHARED_FILES:8d} rows" in proc.stdout
    first = segments.sort("media_id", "segment_id")["text"][0].strip()
    assert first[:20] in proc.stdout  # the transcript lines are still shown


@pytest.mark.slow
def test_truncated_media_part_is_quarantined_and_rebuilt_by_the_rerun(copy_of_shared_archive, tmp_path):
    drop, home, wh, batch_id = parts_of(copy_of_shared_archive)
    before = wh.read_table("media", batch_id)
    transcripts = wh.read_table("transcripts", batch_id)
    bad = wh.table_file("media", batch_id)
    truncate(bad)
    proc = cli(["process", str(drop), "--warehouse", wh.root], home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{SHARED_FILES} total, {SHARED_FILES} ok, 0 failed, 0 skipped" in proc.stdout
    after = wh.read_table("media", batch_id)
    assert sorted(after["media_id"].to_list()) == sorted(before["media_id"].to_list())
    assert after.drop("processed_at").sort("source_uri").equals(before.drop("processed_at").sort("source_uri"))
    aside = sorted(os.listdir(Path(wh.root) / "_quarantine" / "media" / f"batch_id={batch_id}"))
    assert len(aside) == 2 and aside[0].endswith(".json") and aside[1].endswith(".parquet")
    # the model steps' tables were current: nothing was transcribed again
    assert wh.read_table("transcripts", batch_id).equals(transcripts)
    assert_each_file_once(wh, batch_id, SHARED_FILES, speech=SHARED_SPEECH)


@pytest.mark.slow
def test_truncated_asr_words_part_is_rebuilt_by_redoing_the_files(copy_of_shared_archive, tmp_path):
    drop, home, wh, batch_id = parts_of(copy_of_shared_archive)
    words = wh.read_table("asr_words", batch_id)
    truncate(wh.table_file("asr_words", batch_id))
    proc = cli(["process", str(drop), "--warehouse", wh.root], home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = wh.read_table("asr_words", batch_id)
    assert rebuilt.height == words.height and rebuilt["media_id"].n_unique() == SHARED_SPEECH
    moved = {p.name.split("=")[0] for p in (Path(wh.root) / "_quarantine").iterdir()}
    assert moved == {"asr_words", "transcripts"}  # the bad part, and the state that vouched for it
    state = wh.read_table("transcripts", batch_id)
    assert (state["status"] == "ok").all() and state.height == SHARED_SPEECH
    assert_each_file_once(wh, batch_id, SHARED_FILES, speech=SHARED_SPEECH)

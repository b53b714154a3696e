"""Hostile local drops through real registration and real Dagster runs of ``ingest`` (and the
transcription step after it): links and special files, a silence bomb, MP3s with trailing
bytes, two audio tracks. Asserts the recorded ``media`` rows."""

import datetime as dt
import errno
import os
import shutil
import threading
from contextlib import contextmanager

import dagster as dg
import numpy as np
import polars as pl
import pytest

from opentranscribe_pipeline.assets import ingest, transcribe
from opentranscribe_pipeline.assets.modelstep import usable_audio
from opentranscribe_pipeline.schemas import Media
from opentranscribe_pipeline.speech.decode import encode_flac
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import SAMPLE_DROP, TRUTH
from ..data.make_messy_media import TAILS, mp3_with_tail, silence_bomb, two_tracks
from ..demux_spy import DemuxSpy
from .test_batch_pipeline import register, run_batch


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def rows(root, batch_id) -> dict[str, dict]:
    media = Warehouse(str(root)).read_table("media", batch_id)
    Media.validate(media)
    return {uri.rsplit("/", 1)[1]: row for uri, row in zip(media["source_uri"], media.iter_rows(named=True))}


@contextmanager
def fifo_readers(path):
    """The readers that block on the fifo at ``path`` meanwhile, counted: opening its write end
    without blocking succeeds only while a reader has it open, and closing it again ends that
    reader's wait (it reads EOF), so a blocked reader is caught and released, never a hang."""
    caught: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO, exc  # no reader
                stop.wait(0.005)
                continue
            caught.append(fd)
            os.close(fd)
            while not stop.is_set() and _has_reader(path):
                stop.wait(0.005)  # the same reader, not yet gone

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield caught
    finally:
        stop.set()
        thread.join()


def _has_reader(path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def test_links_and_special_files_are_skipped_and_never_opened(tmp_path, instance):
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(SAMPLE_DROP / "meeting-02.flac", drop / "meeting-02.flac")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SAMPLE_DROP / "call-07.flac", outside / "call-07.flac")
    os.symlink("/etc/passwd", drop / "evil.wav")
    os.symlink(outside / "call-07.flac", drop / "outside.flac")
    os.symlink(outside, drop / "linked folder")
    os.mkfifo(drop / "pipe.wav")  # opening it for reading would block forever
    root = tmp_path / "warehouse"
    reg = register(instance, root, drop)
    assert reg.skipped == [
        ("evil.wav", "symbolic link: not followed"),
        ("linked folder", "symbolic link: not followed"),
        ("outside.flac", "symbolic link: not followed"),
        ("pipe.wav", "not a regular file (fifo): not read"),
    ]
    assert reg.new_files == 1 and reg.ignored == []
    [batch_id] = reg.new_batch_ids
    manifest = Warehouse(str(root)).read_table("batches", batch_id)
    assert [u.rsplit("/", 1)[1] for u in manifest["source_uri"]] == ["meeting-02.flac"]

    # registered as a file, swapped for a link (or a fifo) before ingest: refused, not read
    (drop / "meeting-02.flac").rename(tmp_path / "moved.flac")
    os.symlink("/etc/passwd", drop / "meeting-02.flac")
    result = dg.materialize([ingest], partition_key=batch_id, instance=instance, resources=_res(root))
    assert result.success
    [row] = rows(root, batch_id).values()
    assert (row["status"], row["error"], row["media_id"]) == ("skipped", "symbolic link: not followed", None)
    os.unlink(drop / "meeting-02.flac")
    os.mkfifo(drop / "meeting-02.flac")
    shutil.rmtree(root / "media")  # a fresh ingest of the same batch
    with fifo_readers(drop / "meeting-02.flac") as blocked:  # the watch catches a blocking reader
        with open(drop / "meeting-02.flac", "rb") as reader:  # blocks until the watch opens the write end
            assert reader.read() == b""  # released by the watch (counted before it closed): EOF
        assert len(blocked) == 1
    with fifo_readers(drop / "meeting-02.flac") as blocked:
        assert dg.materialize([ingest], partition_key=batch_id, instance=instance, resources=_res(root)).success
    assert blocked == []  # never blocked on the fifo
    [row] = rows(root, batch_id).values()
    assert (row["status"], row["error"], row["media_id"]) == ("skipped", "not a regular file (fifo): not read", None)


def _res(root):
    from opentranscribe_pipeline.resources import WarehouseResource

    return {"warehouse": WarehouseResource(root=str(root))}


def test_hostile_files_are_recorded_without_decoding_the_bombs_and_skip_the_models(tmp_path, instance, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    silence_bomb(drop / "bomb.flac")
    silence_bomb(drop / "lying bomb.flac", lie=True)
    silence_bomb(drop / "quiet room.flac", hours=0.05)  # 3 min of digital silence: plausible, silent
    mp3_with_tail(drop / "zeros.mp3", TAILS["3 zero bytes"])
    mp3_with_tail(drop / "tagged.mp3", TAILS["ID3v1 tag"])
    two_tracks(drop / "two tracks.mkv", default=None, codec="flac")
    # one quiet short sound in 3 s of silence (0.2 s at -55 dBFS: less than 0.25 s above
    # -60 dBFS, which the old rule called silent): a quiet "yes" must reach the speech models
    t = np.arange(int(0.2 * 16000)) / 16000
    word = (10 ** (-55 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    quiet_word = np.zeros(3 * 16000, np.float32)
    quiet_word[16000 : 16000 + word.size] = word
    (drop / "quiet word.flac").write_bytes(encode_flac(quiet_word))
    root = tmp_path / "warehouse"
    [batch_id] = register(instance, root, drop).new_batch_ids

    spy = DemuxSpy().install(monkeypatch, "opentranscribe_pipeline.assets.media")
    result = run_batch(instance, root, batch_id, selection=(ingest, transcribe))
    assert result.success
    by = rows(root, batch_id)
    for name in ("bomb.flac", "lying bomb.flac"):
        assert by[name]["status"] == "failed"
        assert by[name]["error"].startswith("implausible duration: "), by[name]["error"]
    quiet = by["quiet room.flac"]
    assert (quiet["status"], quiet["silent"], quiet["active_fraction"]) == ("ok", True, 0.0)
    word = by["quiet word.flac"]
    assert (word["status"], word["silent"]) == ("ok", False) and 0 < word["active_fraction"] * 3.0 < 0.25
    for name in ("zeros.mp3", "tagged.mp3"):
        row = by[name]
        assert row["status"] == "ok" and row["silent"] is False
        assert abs(row["duration_s"] - TRUTH[f"{SAMPLE_DROP.name}/radio_show_03.mp3"]["duration_s"]) < 0.1
    assert by["zeros.mp3"]["decode_warnings"] >= 1 and by["tagged.mp3"]["decode_warnings"] == 0
    mkv = by["two tracks.mkv"]
    assert (mkv["status"], mkv["audio_tracks"], mkv["audio_track"]) == ("ok", 2, 0)
    assert mkv["video_codec"] == "mpeg4"

    # the speech models see neither the bombs nor the silent file
    wh = Warehouse(str(root))
    wanted = set(usable_audio(wh, batch_id, "transcripts")["media_id"])
    assert wanted == {by[n]["media_id"] for n in ("zeros.mp3", "tagged.mp3", "two tracks.mkv", "quiet word.flac")}
    transcripts = wh.read_table("transcripts", batch_id)
    assert set(transcripts["media_id"]) == wanted
    md = {
        k: v.value
        for m in result.asset_materializations_for_node("ingest")
        if m.asset_key.path == ["media"]
        for k, v in m.metadata.items()
    }
    assert (md["files_ok"], md["files_failed"], md["files_silent"]) == (5, 2, 1)
    # the bombs cost next to no decoding: the one that declares 3 h is refused from its header
    # (not a packet read), the one that declares nothing is stopped at the 10 min it may hold
    read = {uri.rsplit("/", 1)[1]: [(o.packets, o.seconds) for o in opened] for uri, opened in spy.by_name.items()}
    assert read["bomb.flac"] == [(0, 0.0)]
    [(_, seconds)] = read["lying bomb.flac"]
    assert 600 < seconds < 900, read  # of the 10,800 s in the file (a few blocks read ahead)
    [(_, seconds)] = read["quiet room.flac"]
    assert seconds == pytest.approx(180, abs=9)  # a plausible silent file is decoded whole


def test_configured_audio_track(tmp_path, instance, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    two_tracks(drop / "two tracks.mp4", default=0)
    root = tmp_path / "warehouse"
    [batch_id] = register(instance, root, drop).new_batch_ids
    monkeypatch.setenv("OPENTRANSCRIBE_AUDIO_TRACK", "1")
    assert dg.materialize([ingest], partition_key=batch_id, instance=instance, resources=_res(root)).success
    [row] = rows(root, batch_id).values()
    assert (row["audio_tracks"], row["audio_track"]) == (2, 1)
    meeting = TRUTH[f"{SAMPLE_DROP.name}/meeting-02.flac"]["duration_s"]
    assert abs(row["duration_s"] - meeting) < 0.1


def test_old_media_tables_without_the_new_columns_still_conform(tmp_path):
    from opentranscribe_pipeline.schemas import conform

    old = pl.DataFrame(
        {
            "batch_id": ["b"],
            "media_id": ["0" * 64],
            "source_uri": ["/x.wav"],
            "size_bytes": [10],
            "duration_s": [1.0],
            "status": ["ok"],
            "ingest_version": ["pyav-16k-mono-flac/1"],
            "processed_at": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)],
        }
    )
    conformed = conform(old, Media)
    Media.validate(conformed)
    assert conformed["silent"].to_list() == [None]

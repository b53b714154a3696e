"""Batching rules, without Dagster, storage or models: how new files are cut into batches."""

from __future__ import annotations

from opentranscribe_pipeline import settings
from opentranscribe_pipeline.drops.batches import BatchLimits, batch_id_for, batch_prefix, is_media_name, plan_batches
from opentranscribe_pipeline.storage import SourceObject

HOUR = 3600.0


def files(*durations: float) -> list[tuple[SourceObject, float]]:
    return [(SourceObject(f"/in/d/f{i}.wav", f"f{i}.wav", 1000), d) for i, d in enumerate(durations)]


def sizes(batches) -> list[int]:
    return [len(b) for b in batches]


def test_limits_default_to_the_settings_constants():
    assert BatchLimits() == BatchLimits(settings.BATCH_MAX_FILES, settings.BATCH_MAX_HOURS)
    assert (BatchLimits().max_files, BatchLimits().max_hours) == (200, 20.0)


def test_plan_cuts_by_file_count():
    batches = plan_batches(files(*[60.0] * 5), BatchLimits(max_files=2, max_hours=100))
    assert sizes(batches) == [2, 2, 1]
    assert [o.relative for b in batches for o, _ in b] == [f"f{i}.wav" for i in range(5)]  # order kept
    assert sizes(plan_batches(files(*[60.0] * 4), BatchLimits(max_files=2))) == [2, 2]  # no empty tail


def test_plan_cuts_by_hours_of_audio():
    limits = BatchLimits(max_files=100, max_hours=1.0)
    # 0.5 h + 0.5 h is exactly the limit: allowed; the next file would go over it
    assert sizes(plan_batches(files(0.5 * HOUR, 0.5 * HOUR, 0.1 * HOUR), limits)) == [2, 1]
    assert sizes(plan_batches(files(0.6 * HOUR, 0.6 * HOUR, 0.3 * HOUR), limits)) == [1, 2]
    # a file longer than the limit still gets a batch, alone
    assert sizes(plan_batches(files(0.2 * HOUR, 3 * HOUR, 0.2 * HOUR), limits)) == [1, 1, 1]


def test_plan_whichever_limit_comes_first():
    limits = BatchLimits(max_files=3, max_hours=1.0)
    assert sizes(plan_batches(files(*[0.1 * HOUR] * 7), limits)) == [3, 3, 1]  # files first
    assert sizes(plan_batches(files(*[0.4 * HOUR] * 5), limits)) == [2, 2, 1]  # hours first
    assert plan_batches([], limits) == []


def test_batch_ids_are_prefix_and_four_digit_sequence():
    assert batch_id_for("drop-1", 0) == "drop-1-0000"
    assert batch_id_for("drop-1", 42) == "drop-1-0042"
    assert batch_id_for("x", 12345) == "x-12345"
    assert sorted(batch_id_for("d", s) for s in (10, 2, 1)) == ["d-0001", "d-0002", "d-0010"]


def test_batch_prefix_keeps_distinct_drops_distinct():
    assert batch_prefix("drop-2026-11-24") == "drop-2026-11-24"  # already partition-key safe
    odd = batch_prefix("dröp ü 1")
    assert "~" in odd and odd == batch_prefix("dröp ü 1")  # slug plus a stable hash
    assert batch_prefix("dröp ü 1") != batch_prefix("dröp ü_1")


def test_media_names():
    for name in ("a.wav", "B.WAV", "dir/take 1.mp3", "x..y.flac", "v.mkv", "a.tar.ogg"):
        assert is_media_name(name), name
    for name in (".hidden.wav", "dir/.x.flac", "notes.txt", "_READY", "a.wav.part", "wav", "dir.wav/readme"):
        assert not is_media_name(name), name


def test_local_listings_skip_links_and_special_files_with_a_reason(tmp_path):
    """The CLI's listing (list_source) and the sensor's (LocalSource) agree: regular files
    only; links (to files or folders, inside or outside the drop) and fifos are reported."""
    import os
    import socket

    from opentranscribe_pipeline.storage.sources import LocalSource, list_source, open_local_regular

    drop = tmp_path / "in" / "d"
    (drop / "sub").mkdir(parents=True)
    (drop / "a.wav").write_bytes(b"x" * 10)
    (drop / "sub" / "b.wav").write_bytes(b"y" * 5)
    os.symlink("/etc/passwd", drop / "evil.wav")
    os.symlink(drop / "a.wav", drop / "same.wav")
    os.symlink(drop / "sub", drop / "loop")
    os.mkfifo(drop / "f.wav")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(drop / "s.wav"))
    try:
        skipped: list[tuple[str, str]] = []
        listed = list_source(str(drop), skipped=skipped)
        assert [(o.relative, o.size_bytes) for o in listed] == [("a.wav", 10), ("sub/b.wav", 5)]
        expected = [
            ("evil.wav", "symbolic link: not followed"),
            ("f.wav", "not a regular file (fifo): not read"),
            ("loop", "symbolic link: not followed"),
            ("s.wav", "not a regular file (socket): not read"),
            ("same.wav", "symbolic link: not followed"),
        ]
        assert skipped == expected
        source = LocalSource(str(tmp_path / "in"))
        entries, more = source.list_drop("d", None)
        assert [e.rel for e in entries] == ["a.wav", "sub/b.wav"] and not more
        assert sorted((rel, why) for (_, rel), why in source.skipped.items()) == expected
        for name in ("evil.wav", "f.wav", "s.wav"):
            try:
                open_local_regular(str(drop / name))
            except OSError as exc:
                assert str(exc) == dict(expected)[name]
            else:
                raise AssertionError(f"{name} was opened")
        with open_local_regular(str(drop / "a.wav")) as f:
            assert f.read() == b"x" * 10 and f.name == str(drop / "a.wav")
    finally:
        sock.close()

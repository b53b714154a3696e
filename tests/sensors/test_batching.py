"""Batching rules, without Dagster, storage or models: how new files are cut into batches."""

from __future__ import annotations

from opentranscribe_pipeline import settings
from opentranscribe_pipeline.batching import BatchLimits, batch_id_for, batch_prefix, is_media_name, plan_batches
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

"""``archive_summary`` on a real warehouse: one drop of bad inputs (failed, skipped and ok
files) ingested, one drop run through the whole batch job; the dashboard counts both drops,
names the batch whose files partly failed, and its numbers are numeric metadata."""

import shutil

import dagster as dg
import pytest

from opentranscribe_pipeline.assets import ingest
from opentranscribe_pipeline.assets.checks import failed_files_tag
from opentranscribe_pipeline.assets.summary import SUMMARY_CHECK, archive_summary
from opentranscribe_pipeline.query.summary import archive_summary as summarize
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.storage import Warehouse

from ..conftest import BAD_INPUTS, SAMPLE_DROP, build_bad_drop
from .test_batch_pipeline import register, run_batch


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.mark.slow
def test_dashboard_over_drops_with_failed_skipped_and_ok_files(tmp_path, instance):
    root = tmp_path / "warehouse"
    bad = build_bad_drop(tmp_path / "drop-bad", good=("lecture_05.ogg",))
    [bad_batch] = register(instance, root, bad).new_batch_ids
    ingested = run_batch(instance, root, bad_batch, selection=[ingest])
    assert ingested.success
    # the batch's run says so in the runs list and the partition's runs, without a click
    expected_failed = sum(1 for status, _ in BAD_INPUTS.values() if status == "failed")
    assert instance.get_run_by_id(ingested.run_id).tags[failed_files_tag("media")] == str(expected_failed)
    good = tmp_path / "drop-good"
    good.mkdir()
    shutil.copy(SAMPLE_DROP / "call-07.flac", good / "call-07.flac")
    [good_batch] = register(instance, root, good).new_batch_ids
    good_run = run_batch(instance, root, good_batch)
    assert good_run.success
    assert not any(k.endswith("_failed_files") for k in instance.get_run_by_id(good_run.run_id).tags)

    s = summarize(Warehouse(str(root)))
    drops = {row["drop"]: row for row in s.per_drop.iter_rows(named=True)}
    assert set(drops) == {"drop-bad", "drop-good"}
    expected_skipped = sum(1 for status, _ in BAD_INPUTS.values() if status == "skipped")
    bad_row = drops["drop-bad"]
    assert (bad_row["failed"], bad_row["skipped"]) == (expected_failed, expected_skipped)
    assert bad_row["files"] == bad_row["ok"] + bad_row["failed"] + bad_row["skipped"] > expected_failed
    assert bad_row["failing_batches"] == 1 and bad_row["audio_h"] == 0.0  # ingested, not transcribed yet
    good_row = drops["drop-good"]
    assert (good_row["files"], good_row["ok"], good_row["failed"]) == (1, 1, 0)
    assert good_row["audio_h"] > 0 and good_row["languages"] == 1 and good_row["local_speakers"] >= 1
    assert s.failing["batch_id"].to_list() == [bad_batch] and s.failing["first_error"][0]
    assert s.slowest["batch_id"][0] == good_batch and s.slowest["realtime_factor"][0] > 0
    assert s.totals["files"] == bad_row["files"] + 1 and s.totals["failing_batches"] == 1
    assert s.languages["language"].to_list() == ["en"]

    result = dg.materialize(
        [archive_summary], instance=instance, resources={"warehouse": WarehouseResource(root=str(root))}
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("archive_summary")
    md = mat.metadata
    # plain numbers, so the UI plots them across materializations
    for key in (
        "files",
        "files_ok",
        "files_failed",
        "files_skipped",
        "audio_hours",
        "local_speakers",
        "failing_batches",
    ):
        assert isinstance(md[key], (dg.IntMetadataValue, dg.FloatMetadataValue)), key
    assert md["files_failed"].value == expected_failed and md["failing_batches"].value == 1
    assert bad_batch in md["failing_batches_list"].value and "drop-good" in md["per_drop"].value
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == SUMMARY_CHECK and not check.passed
    assert bad_batch in check.description and good_batch not in check.description


def test_empty_warehouse_summarizes_to_zeros(tmp_path):
    s = summarize(Warehouse(str(tmp_path / "empty")))
    assert s.per_drop.is_empty() and s.failing.is_empty()
    assert s.totals["files"] == 0 and s.totals["global_speakers"] == 0


# -- yield (issue 32) --------------------------------------------------------------------------------
def test_yield_per_drop_counts_unscored_files_as_not_scored(tmp_path, instance):
    """Quality rows the test chose (tests/query/test_quality_query.py's warehouse: drop-a
    fully scored, drop-b with one file of an older batch, drop-c never scored): hours in,
    speech, speech at or above the floor and the flags per drop equal the sums over
    ``media_quality``; unscored files are counted as such, never as 0 h; the numbers are
    numeric metadata."""
    import polars as pl

    from opentranscribe_pipeline.query.summary import yield_lines

    from ..query.test_quality_query import build

    wh = Warehouse(str(tmp_path / "wh"))
    build(wh)
    mq = wh.scan("media_quality").join(wh.scan("batches").select("batch_id", "drop").unique(), on="batch_id")
    media = wh.scan("media").join(wh.scan("batches").select("batch_id", "drop").unique(), on="batch_id")
    s = summarize(wh)
    rows = {r["drop"]: r for r in s.yield_per_drop.iter_rows(named=True)}
    assert set(rows) == {"drop-a", "drop-b", "drop-c"}
    for drop, row in rows.items():
        scored = mq.filter(pl.col("drop") == drop)
        files = media.filter(pl.col("drop") == drop)
        assert row["hours_in"] == pytest.approx(files["duration_s"].sum() / 3600)
        assert row["scored_files"] == scored.height
        assert row["not_scored_files"] == files.height - scored.height
        if scored.height:
            assert row["speech_h"] == pytest.approx(scored["speech_s"].sum() / 3600) and row["speech_h"] > 0
            assert row["above_floor_h"] == pytest.approx(scored["speech_above_floor_s"].sum() / 3600)
            assert 0 < row["above_floor_share"] < 1
        else:  # never scored: unknown, not zero
            assert row["speech_h"] is None and row["above_floor_h"] is None and row["above_floor_share"] is None
    assert rows["drop-b"]["not_scored_files"] == 1 and rows["drop-c"]["not_scored_h"] == pytest.approx(40 / 3600)
    # drop-a: phone.wav's two noisy segments, one low-confidence one, and the file's telephone band
    assert rows["drop-a"]["top_flags"] == "noisy 2 segments, low_confidence 1 segment, telephone_band 1 file"
    t = s.totals
    assert t["scored_files"] == mq.height and t["not_scored_files"] == media.height - mq.height
    assert t["above_floor_h"] == pytest.approx(mq["speech_above_floor_s"].sum() / 3600)
    assert t["quality_floors"] == [3.0] and s.flag_counts["noisy"] == 2 and s.flag_counts["telephone_band"] == 1
    lines = yield_lines(s)
    assert "floor 3" in lines[0] and any(line.strip().startswith("drop-c:") and "not scored" in line for line in lines)

    result = dg.materialize(
        [archive_summary], instance=instance, resources={"warehouse": WarehouseResource(root=wh.root)}
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("archive_summary")
    md = mat.metadata
    for key in ("hours_in", "speech_hours", "hours_above_floor", "share_above_floor"):
        assert isinstance(md[key], dg.FloatMetadataValue), key
    for key in ("files_scored", "files_not_scored", "flag_noisy", "flag_telephone_band"):
        assert isinstance(md[key], dg.IntMetadataValue), key
    assert md["files_not_scored"].value == 2 and md["flag_noisy"].value == 2
    assert md["hours_above_floor"].value == pytest.approx(t["above_floor_h"], abs=1e-4)
    assert "drop-c" in md["yield_per_drop"].value


def test_yield_without_any_quality_rows_has_no_speech_hours(tmp_path):
    """A warehouse from before the quality step: every file not scored, no speech figure."""
    from opentranscribe_pipeline.assets.summary import yield_metadata

    from ..query.test_quality_query import build

    wh = Warehouse(str(tmp_path / "wh"))
    build(wh)
    for table in ("media_quality", "segment_quality"):
        shutil.rmtree(wh.path(table))
    s = summarize(wh)
    assert s.totals["scored_files"] == 0 and s.totals["not_scored_files"] == 5
    assert s.totals["speech_h"] is None and s.yield_per_drop["speech_h"].null_count() == 3
    md = yield_metadata(s)
    assert "speech_hours" not in md and md["files_not_scored"].value == 5 and md["hours_in"].value > 0


def test_yield_of_the_sample_archive_from_the_quality_step(shared_archive):
    """The processed sample archive, scored by the quality step itself: the yield adds up to
    ``media_quality``'s rows, and a file the step did not score is counted as not scored."""
    import polars as pl

    wh = shared_archive.wh
    mq = wh.scan("media_quality").filter(pl.col("status") == "ok")
    media = wh.scan("media").filter(pl.col("status") == "ok")
    s = summarize(wh)
    [row] = s.yield_per_drop.iter_rows(named=True)
    assert row["drop"] == "drop-2026-11-24" and row["scored_files"] == mq.height > 0
    assert row["not_scored_files"] == media.height - mq.height
    assert row["hours_in"] == pytest.approx(media["duration_s"].sum() / 3600)
    assert row["speech_h"] == pytest.approx(mq["speech_s"].sum() / 3600) and row["speech_h"] > 0
    assert row["above_floor_h"] == pytest.approx(mq["speech_above_floor_s"].sum() / 3600)
    assert s.totals["quality_floors"] == sorted(set(mq["quality_floor"].to_list()))


def test_show_prints_the_yield_per_drop(tmp_path):
    from ..conftest import cli_in_process
    from ..query.test_quality_query import build

    wh = Warehouse(str(tmp_path / "wh"))
    build(wh)
    out = cli_in_process(["show", "--warehouse", wh.root_uri], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout[out.stdout.index("yield (DNSMOS ovrl floor 3)") :].splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:5]] == ["drop-a", "drop-b", "drop-c", "total"]
    assert "not scored (1 file(s))" in lines[3] and "most flagged: noisy 2 segments" in lines[1]

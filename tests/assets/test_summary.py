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

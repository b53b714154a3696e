"""One file never fails a batch in a CPU stage: ``conversation_analytics`` over a batch where
one file's statistics raise and another's break ``speaker_stats``' rules. The step succeeds,
the good files have their rows, the bad ones have none (never materialized as if good), and
each is recorded in ``file_issues`` with its source name, the stage, the rule and the values;
the WARN check lists them; the run is tagged."""

from __future__ import annotations

import hashlib

import dagster as dg
import polars as pl
import pytest

from opentranscribe_pipeline.assets.isolation import hold_back_invalid, issues_check_name, per_file
from opentranscribe_pipeline.assets.stats import STAGE, batch_stats, conversation_analytics
from opentranscribe_pipeline.partitions import BATCHES
from opentranscribe_pipeline.query.issues import read_issues
from opentranscribe_pipeline.query.summary import archive_summary
from opentranscribe_pipeline.resources import WarehouseResource
from opentranscribe_pipeline.schemas import FileIssues, SpeakerStats
from opentranscribe_pipeline.storage import Warehouse

BATCH = "drop-x-0000"


def mid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


GOOD, RAISES, BREAKS = mid("good.wav"), mid("raises.wav"), mid("breaks.wav")


def tables() -> dict[str, pl.DataFrame]:
    media = pl.DataFrame(
        {
            "batch_id": [BATCH] * 3,
            "media_id": [GOOD, RAISES, BREAKS],
            "source_uri": ["/in/drop-x/good.wav", "/in/drop-x/raises.wav", "/in/drop-x/breaks.wav"],
            "status": ["ok"] * 3,
            "duration_s": [20.0, 20.0, 20.0],
            "error": pl.Series([None, None, None], dtype=pl.Utf8),
        }
    )
    turns = pl.DataFrame(
        {
            "media_id": [GOOD, GOOD, RAISES, RAISES, BREAKS],
            "start_s": [0.0, 5.0, 0.0, 4.0, 9.0],
            "end_s": [4.0, 9.0, 3.0, 8.0, 12.0],
            # RAISES: a turn without a speaker (the statistics cannot order None with labels);
            # BREAKS: a label outside the contract (`SPEAKER_NN`), as another diarizer might give
            "speaker": ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", None, "speaker zero"],
        }
    )
    words = pl.DataFrame(
        {
            "media_id": [GOOD, GOOD, RAISES, BREAKS],
            "speaker": ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_00"],
            "start_s": [0.5, 5.5, 0.5, 1.0],
            "end_s": [1.0, 6.0, 1.0, 1.5],
        }
    )
    segments = pl.DataFrame(
        {"media_id": [GOOD, RAISES, BREAKS], "speaker": ["SPEAKER_00"] * 3, "text": ["Hello?", "Hi.", "So."]}
    )
    diarization = pl.DataFrame({"media_id": [GOOD, RAISES, BREAKS], "status": ["ok"] * 3})
    return {"media": media, "speaker_turns": turns, "words": words, "segments": segments, "diarization": diarization}


def test_batch_stats_holds_back_only_the_bad_files():
    t = tables()
    speakers, medias, issues = batch_stats(
        BATCH, t["media"], pl.DataFrame(), t["speaker_turns"], t["words"], t["segments"], t["diarization"]
    )
    assert set(speakers["media_id"]) == {GOOD} and set(medias["media_id"]) == {GOOD}
    SpeakerStats.validate(speakers)
    by_file = {i.media_id: i for i in issues}
    assert set(by_file) == {RAISES, BREAKS}
    assert by_file[RAISES].rule == "exception" and "TypeError" in by_file[RAISES].reason
    assert by_file[BREAKS].table in ("speaker_stats", "media_stats") and by_file[BREAKS].values


def test_hold_back_pins_row_rules_and_whole_frame_rules_on_their_file():
    row = {
        "batch_id": BATCH,
        "speaker": "SPEAKER_00",
        "talk_s": 10.0,
        "share_of_talk": 1.0,
        "n_words": 3,
        "n_turns": 1,
        "words_per_minute": 18.0,
        "n_questions": 0,
        "n_interruptions": 0,
        "longest_turn_s": 10.0,
    }
    df = pl.DataFrame(
        [
            {**row, "media_id": GOOD},
            {**row, "media_id": BREAKS, "longest_turn_s": 35.1, "talk_s": 32.5},  # the rule of issue 28
            {**row, "media_id": RAISES},
            {**row, "media_id": RAISES},  # a duplicate (media_id, speaker): a whole-frame rule
        ]
    )
    kept, issues = hold_back_invalid("speaker_stats", df, STAGE)
    assert kept["media_id"].to_list() == [GOOD]
    rules = {(i.media_id, i.rule) for i in issues}
    assert (BREAKS, "longest_turn_within_talk") in rules
    assert any(m == RAISES for m, _ in rules)
    [breaks] = [i for i in issues if i.media_id == BREAKS]
    assert "35.1" in breaks.values and "32.5" in breaks.values  # the values, not only the rule
    # nothing to hold back: the frame comes back as it was
    same, none = hold_back_invalid("speaker_stats", df.head(1), STAGE)
    assert none == [] and same.equals(df.head(1))


def test_per_file_records_the_exception_and_goes_on():
    def fn(media_id, x):
        if x < 0:
            raise ValueError(f"negative {x}")
        return x * 2

    results, issues = per_file("s", [("a", 1), ("b", -1), ("c", 3)], fn)
    assert results == {"a": 2, "c": 6}
    [issue] = issues
    assert (issue.media_id, issue.rule) == ("b", "exception") and issue.reason == "ValueError: negative -1"
    assert "test_isolation.py" in issue.values  # where it was raised


@pytest.fixture
def warehouse_with_bad_files(tmp_path):
    wh = Warehouse(str(tmp_path / "warehouse"))
    for table, df in tables().items():
        wh.write_table(table, df, BATCH)
    return wh


def analytics(instance, wh):
    """``conversation_analytics`` materialized for the batch, as the batch run does."""
    instance.add_dynamic_partitions(BATCHES, [BATCH])
    return dg.materialize(
        [conversation_analytics],
        partition_key=BATCH,
        instance=instance,
        resources={"warehouse": WarehouseResource(root=wh.root_uri)},
    )


def test_the_step_succeeds_for_the_good_file_and_records_the_bad_ones(warehouse_with_bad_files):
    wh = warehouse_with_bad_files
    with dg.instance_for_test() as instance:
        result = analytics(instance, wh)
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["speaker_stats_matches_schema"].passed and checks["media_stats_matches_schema"].passed
        held = checks[issues_check_name(STAGE)]
        assert not held.passed and held.severity == dg.AssetCheckSeverity.ERROR
        shown = held.metadata["issues"].value
        assert "raises.wav" in shown and "breaks.wav" in shown  # source names, not only hashes
        assert held.metadata["files_held_back"].value == 2
        # the check result is recorded against the batch's partition (what the UI's check page lists)
        assert held.partition == BATCH
        tags = instance.get_run_by_id(result.run_id).tags
        assert tags[f"opentranscribe/{STAGE}_files_held_back"] == "2"
    assert set(wh.read_table("speaker_stats", BATCH)["media_id"]) == {GOOD}
    assert set(wh.read_table("media_stats", BATCH)["media_id"]) == {GOOD}
    issues = read_issues(wh, [BATCH])
    FileIssues.validate(issues)
    assert set(issues["media_id"]) == {RAISES, BREAKS} and set(issues["stage"]) == {STAGE}
    assert {u.rsplit("/", 1)[-1] for u in issues["source_uri"]} == {"raises.wav", "breaks.wav"}
    # the dashboard lists the batch as missing outputs, and which stage held them back
    summary = archive_summary(wh)
    [row] = summary.failing.iter_rows(named=True)
    assert (row["batch_id"], row["failed"], row["held_back"], row["missing"]) == (BATCH, 0, 2, STAGE)

    # the files fixed, the stage runs again: their rows appear and their issues are gone
    fixed = tables()
    fixed["speaker_turns"] = fixed["speaker_turns"].with_columns(
        speaker=pl.col("speaker").fill_null("SPEAKER_01").replace("speaker zero", "SPEAKER_00")
    )
    wh.write_table("speaker_turns", fixed["speaker_turns"], BATCH)
    with dg.instance_for_test() as instance:
        assert analytics(instance, wh).success
    assert set(wh.read_table("media_stats", BATCH)["media_id"]) == {GOOD, RAISES, BREAKS}
    assert read_issues(wh, [BATCH]).is_empty()
    assert archive_summary(wh).failing.is_empty()


UI_QUERY = """
query ($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name
      executionForLatestMaterialization { status evaluation { severity description } }
      partitionStatuses { ... on AssetCheckDefaultPartitionStatuses { failedPartitions succeededPartitions } }
    } } }
  }
}
"""


def ui_view(instance, asset: str) -> dict:
    """What the Dagster UI's asset page reads for ``asset`` (its GraphQL, over the project's own
    definitions loaded in-process, as the webserver serves it)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="opentranscribe_pipeline.definitions", attribute="defs"),
        location_name="opentranscribe_pipeline",
    )
    with (
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process,
        process.create_request_context() as request,  # as the webserver enters it per request
    ):
        result = execute_dagster_graphql(request, UI_QUERY, variables={"keys": [{"path": [asset]}]})
    assert not result.errors, result.errors
    [node] = result.data["assetNodes"]
    return {c["name"]: c for c in node["assetChecksOrError"]["checks"]}


def test_the_ui_shows_the_batch_as_a_failed_partition_naming_the_files(warehouse_with_bad_files):
    """An operator opening ``speaker_stats`` sees the batch among the *failed* partitions of the
    held-back check (red, severity ERROR, not a green partition) and the files by source name in
    the check's description; the schema check's partition stays green."""
    with dg.instance_for_test() as instance:
        assert analytics(instance, warehouse_with_bad_files).success
        checks = ui_view(instance, "speaker_stats")
    held = checks[issues_check_name(STAGE)]
    assert held["partitionStatuses"] == {"failedPartitions": [BATCH], "succeededPartitions": []}
    latest = held["executionForLatestMaterialization"]
    assert latest["status"] == "FAILED" and latest["evaluation"]["severity"] == "ERROR"
    assert "raises.wav" in latest["evaluation"]["description"] and "breaks.wav" in latest["evaluation"]["description"]
    schema = checks["speaker_stats_matches_schema"]
    assert schema["partitionStatuses"] == {"failedPartitions": [], "succeededPartitions": [BATCH]}

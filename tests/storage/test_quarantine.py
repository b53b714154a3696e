"""A part that cannot be read is named (table, batch, path) and, by the step that rebuilds
it, moved to ``<root>/_quarantine/<table>/batch_id=<id>/<timestamp>.parquet``. Real truncated
Parquet files, over both backends."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from opentranscribe_pipeline.storage import CorruptTable, Warehouse

STATE = pl.DataFrame({"media_id": ["a", "b"], "status": ["ok", "ok"]})
ROWS = pl.DataFrame({"media_id": ["a", "a", "b"], "word": ["x", "y", "z"]})


def truncate(wh: Warehouse, path: str, keep: float = 0.5) -> None:
    data = wh.get_bytes(path)
    wh.put_bytes(path, data[: int(len(data) * keep)])


def quarantined(wh: Warehouse, table: str, batch_id: str) -> list[str]:
    return sorted(wh.files_under(wh.path("_quarantine", table, f"batch_id={batch_id}")))


def test_corrupt_part_is_named_with_table_batch_and_path(wh: Warehouse):
    path = wh.write_table("words", ROWS, "b-0001")
    truncate(wh, path)
    with pytest.raises(CorruptTable) as info:
        wh.read_table("words", "b-0001")
    err = info.value
    assert (err.table, err.batch_id, err.path) == ("words", "b-0001", path)
    assert str(err).startswith(f"table 'words' batch 'b-0001': cannot read {wh.uri(path)}")
    with pytest.raises(CorruptTable, match=re.escape(wh.uri(path))):
        wh.read_parquet(path)
    assert wh.exists(path)  # a reader never moves anything


def test_read_table_can_quarantine_for_the_step_that_rebuilds(wh: Warehouse):
    path = wh.write_table("media", STATE, "b-0001")
    truncate(wh, path)
    assert wh.read_table("media", "b-0001", quarantine_corrupt=True) is None
    assert not wh.exists(path)
    note, parquet = quarantined(wh, "media", "b-0001")
    assert re.search(r"/_quarantine/media/batch_id=b-0001/\d{8}T\d{6}\.\d{6}Z\.json$", note)
    assert parquet == note.removesuffix(".json") + ".parquet"
    assert len(wh.get_bytes(parquet)) > 0  # kept for inspection
    record = json.loads(wh.get_bytes(note))
    assert record["path"] == wh.uri(path) and record["table"] == "media" and "cannot read" in record["reason"]
    assert [q.path for q in wh.quarantined] == [wh.uri(path)]
    wh.write_table("media", STATE, "b-0001")  # the rebuilt part
    assert wh.read_table("media", "b-0001").equals(STATE)


def test_a_bad_row_table_sets_the_state_table_aside(wh: Warehouse):
    """Rows lost with a corrupt part must be redone: the state table that vouched for them is
    moved aside too, so the step sees those files as not done."""
    wh.write_table("transcripts", STATE, "b-1")
    wh.write_table("asr_segments", ROWS, "b-1")
    truncate(wh, wh.write_table("asr_words", ROWS, "b-1"))
    moved = wh.quarantine_corrupt("b-1", ("transcripts", "asr_segments", "asr_words"))
    assert [q.table for q in moved] == ["asr_words", "transcripts"]
    assert "set aside" in moved[1].reason and "asr_words" in moved[1].reason
    assert wh.read_table("transcripts", "b-1") is None and wh.read_table("asr_words", "b-1") is None
    assert wh.read_table("asr_segments", "b-1").equals(ROWS)
    # all readable: nothing moves, the parts are read once each
    wh.write_table("transcripts", STATE, "b-1")
    assert wh.quarantine_corrupt("b-1", ("transcripts", "asr_segments", "asr_words")) == []
    assert wh.read_table("transcripts", "b-1").equals(STATE)


def test_scan_skips_and_reports_a_corrupt_batch_when_asked(wh: Warehouse):
    wh.write_table("words", ROWS, "b-1")
    truncate(wh, wh.write_table("words", ROWS, "b-2"))
    wh.write_table("words", ROWS, "b-3")
    with pytest.raises(CorruptTable):
        wh.scan("words")
    bad: list[CorruptTable] = []
    df = wh.scan("words", corrupt=bad)
    assert df.height == 2 * ROWS.height
    assert [(e.table, e.batch_id) for e in bad] == [("words", "b-2")]


def test_a_corrupt_staged_file_sets_aside_every_staged_file_of_its_item(wh: Warehouse):
    wh.stage("asr_words", "b-1", "a", ROWS.filter(pl.col("media_id") == "a"))
    wh.stage("transcripts", "b-1", "a", STATE.head(1))
    wh.stage("asr_words", "b-1", "b", ROWS.filter(pl.col("media_id") == "b"))
    wh.stage("transcripts", "b-1", "b", STATE.tail(1))
    truncate(wh, wh.staging_file("asr_words", "b-1", "a"))
    assert set(wh.staged("asr_words", "b-1")) == {"b"}
    assert set(wh.staged("transcripts", "b-1")) == {"b"}  # item "a" is redone, never half-trusted
    aside = wh.files_under(wh.path("_quarantine", "_staging"))
    assert len([p for p in aside if p.endswith(".parquet")]) == 2

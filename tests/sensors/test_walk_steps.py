"""The walk's named steps (held, scan, plan, register, finish) one at a time, on a local folder
and a local warehouse: no Dagster, no models (durations are fixed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from opentranscribe_pipeline.drops import walk as drops  # the module whose probe_durations the walk calls
from opentranscribe_pipeline.drops.batches import BatchLimits, batch_id_for, write_batches
from opentranscribe_pipeline.drops.rules import DropSettings
from opentranscribe_pipeline.drops.scanner import DropScanner
from opentranscribe_pipeline.drops.state import (
    Cursor,
    Ledger,
    NewBatch,
    PendingDrop,
    Plan,
    Scan,
    TickResult,
    Walk,
    WatchedDrop,
)
from opentranscribe_pipeline.storage import SourceObject, Warehouse
from opentranscribe_pipeline.storage.sources import Entry, LocalSource

# listing order (bytes): _READY, a.wav, b.txt, c.wav, d.wav
DROP_FILES = ("_READY", "a.wav", "b.txt", "c.wav", "d.wav")


@pytest.fixture
def incoming(tmp_path) -> Path:
    drop = tmp_path / "in" / "d"
    drop.mkdir(parents=True)
    for name in DROP_FILES:
        (drop / name).write_bytes(b"x" * 16)
    return tmp_path / "in"


@pytest.fixture(autouse=True)
def minute_long_files(monkeypatch):
    """Every file lasts 60 s: no header is read."""
    monkeypatch.setattr(drops, "probe_durations", lambda objects, s3, workers=8: [60.0] * len(objects))


def make_scanner(incoming: Path, tmp_path: Path, has_partition=None, **settings) -> DropScanner:
    settings.setdefault("limits", BatchLimits(max_files=2))
    config = DropSettings(incoming=str(incoming), settle_s=0, **settings)
    now = time.time() + 60  # the drop's files were written a minute ago
    return DropScanner(
        config,
        LocalSource(str(incoming)),
        Warehouse(str(tmp_path / "wh")),
        has_partition=has_partition,
        clock=lambda: now,
    )


def walking(next_seq=0, relist_all=True, last_key=None, after=None, key_count=0, marker="m1") -> PendingDrop:
    return PendingDrop(
        since=0.0,
        last_key=last_key,
        relist_all=relist_all,
        marker="m0",
        next_seq=next_seq,
        walk=Walk(start_seq=next_seq, marker=marker, key_count=key_count, after=after),
    )


def uri(incoming: Path, rel: str) -> str:
    return str(incoming / "d" / rel)


def rels(objects: list[SourceObject]) -> list[str]:
    return [o.relative for o in objects]


# -- scan ------------------------------------------------------------------------------------------
def test_scan_reads_the_whole_drop_in_listing_order(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    scan = scanner._scan("d", walking(), set(), 100, None, TickResult(Cursor()))
    assert rels(scan.new) == ["a.wav", "c.wav", "d.wav"]  # not the marker, not b.txt
    assert scan.new[0].uri == uri(incoming, "a.wav") and scan.new[0].size_bytes == 16
    assert scan.positions == [("a.wav", 2), ("c.wav", 4), ("d.wav", 5)]
    assert (scan.start, scan.last_key, scan.keys_seen, scan.finished, scan.paused) == (None, "d.wav", 5, True, False)


def test_scan_stops_at_the_budget_and_skips_what_batches_hold(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    scan = scanner._scan("d", walking(), set(), 2, None, TickResult(Cursor()))
    assert rels(scan.new) == ["a.wav", "c.wav"] and scan.last_key == "c.wav" and scan.keys_seen == 4
    assert not scan.finished and not scan.paused
    scan = scanner._scan("d", walking(), {uri(incoming, "a.wav")}, 100, None, TickResult(Cursor()))
    assert rels(scan.new) == ["c.wav", "d.wav"] and scan.finished


def test_scan_starts_where_the_walk_or_the_last_walk_stopped(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    scan = scanner._scan("d", walking(after="b.txt"), set(), 100, None, TickResult(Cursor()))
    assert (scan.start, rels(scan.new), scan.keys_seen) == ("b.txt", ["c.wav", "d.wav"], 2)
    late = walking(relist_all=False, last_key="a.wav", key_count=None)
    scan = scanner._scan("d", late, set(), 100, None, TickResult(Cursor()))
    assert (scan.start, rels(scan.new)) == ("a.wav", ["c.wav", "d.wav"])
    relisted = walking(relist_all=True, last_key="a.wav")  # a re-written marker: from the first key
    assert rels(scanner._scan("d", relisted, set(), 100, None, TickResult(Cursor())).new) == ["a.wav", "c.wav", "d.wav"]


def test_scan_pauses_before_an_upload_in_progress(incoming, tmp_path):
    (incoming / "d" / "c2.wav.part").write_bytes(b"half")  # sorts between c.wav and d.wav
    scan = make_scanner(incoming, tmp_path)._scan("d", walking(), set(), 100, None, TickResult(Cursor()))
    assert rels(scan.new) == ["a.wav", "c.wav"] and scan.last_key == "c.wav"
    assert scan.paused and not scan.finished


def test_scan_uses_the_listing_in_hand_and_skips_unsafe_keys(incoming, tmp_path):
    entries = [Entry("a.wav", 1, 0.0, "e"), Entry("../x.wav", 1, 0.0, "e"), Entry("b//c.wav", 1, 0.0, "e")]
    result = TickResult(Cursor())
    scan = make_scanner(incoming, tmp_path)._scan("d", walking(), set(), 100, entries, result)
    assert rels(scan.new) == ["a.wav"] and scan.finished and scan.keys_seen == 3
    assert result.notes == ["drop 'd': 2 unsafe key(s) skipped"]


# -- plan ------------------------------------------------------------------------------------------
def scan_of(incoming: Path, names: list[str], finished: bool) -> Scan:
    new = [SourceObject(uri(incoming, n), n, 16) for n in names]
    positions = [(n, i + 1) for i, n in enumerate(names)]
    return Scan(None, new, positions, names[-1] if names else None, len(names), finished=finished, paused=False)


def test_plan_cuts_by_the_limits(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    scan = scan_of(incoming, ["a.wav", "b.wav", "c.wav"], finished=True)
    plan = scanner._plan(scan)
    assert [rels([o for o, _ in b]) for b in plan.batches] == [["a.wav", "b.wav"], ["c.wav"]]
    assert plan.scan == scan and all(d == 60.0 for b in plan.batches for _, d in b)
    assert scanner._plan(scan_of(incoming, [], finished=True)).batches == []


def test_plan_of_an_unfinished_walk_keeps_its_open_last_batch_for_later(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    plan = scanner._plan(scan_of(incoming, ["a.wav", "b.wav", "c.wav"], finished=False))
    assert [len(b) for b in plan.batches] == [2]
    assert (plan.scan.last_key, plan.scan.keys_seen) == ("b.wav", 2)  # c.wav: listed again next tick
    full = scanner._plan(scan_of(incoming, ["a.wav", "b.wav", "c.wav", "d.wav"], finished=False))
    assert [len(b) for b in full.batches] == [2, 2] and full.scan.last_key == "d.wav"
    alone = scanner._plan(scan_of(incoming, ["a.wav"], finished=False))  # one batch: nothing to wait for
    assert [len(b) for b in alone.batches] == [1]


# -- register --------------------------------------------------------------------------------------
def test_register_writes_one_manifest_per_batch(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    plan = scanner._plan(scan_of(incoming, ["a.wav", "c.wav", "d.wav"], finished=True))
    result = TickResult(Cursor())
    assert scanner._register("d", plan, 5, result) == 7
    assert result.batches == [
        NewBatch("d-0005", "d", str(incoming / "d"), 2),
        NewBatch("d-0006", "d", str(incoming / "d"), 1),
    ]
    assert scanner.files_registered == 3
    manifest = scanner.wh.read_table("batches", "d-0006")
    assert manifest["source_uri"].to_list() == [uri(incoming, "d.wav")]


# -- held (before the scan) ------------------------------------------------------------------------
def test_held_sources_and_batches_a_dead_tick_left(incoming, tmp_path):
    partitions = set()
    scanner = make_scanner(incoming, tmp_path, has_partition=partitions.__contains__)
    write_batches(scanner.wh, "d", [[(SourceObject(uri(incoming, "a.wav"), "a.wav", 16), 60.0)]], 0)  # earlier walk
    write_batches(scanner.wh, "d", [[(SourceObject(uri(incoming, "c.wav"), "c.wav", 16), 60.0)]], 1)  # orphan
    result = TickResult(Cursor())
    held, next_seq = scanner._held("d", walking(next_seq=1, relist_all=True), result)
    assert held == {uri(incoming, "a.wav"), uri(incoming, "c.wav")} and next_seq == 2
    assert result.batches == [NewBatch("d-0001", "d", str(incoming / "d"), -1)]  # its run requested again

    partitions.add("d-0001")
    result = TickResult(Cursor())
    held, next_seq = scanner._held("d", walking(next_seq=1, relist_all=False, key_count=None), result)
    assert held == {uri(incoming, "c.wav")} and next_seq == 2  # listing from the last key: a.wav not listed
    assert result.batches == []


# -- finish ----------------------------------------------------------------------------------------
def ledger_of(scanner: DropScanner, drop: str) -> Ledger | None:
    return scanner.read_ledger(drop)


def test_finish_a_walk_saves_the_ledger_then_watches_the_drop(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path, watch_max=1, watch_s=100.0)
    pending = walking(next_seq=0, key_count=0)
    cursor = Cursor(pending={"d": pending}, watch={"older": WatchedDrop(None, None, 0, 0, until=scanner.now + 1)})
    scan = scanner._scan("d", pending, set(), 100, None, TickResult(cursor))
    plan = scanner._plan(scan)
    next_seq = scanner._register("d", plan, 0, TickResult(cursor))
    scanner._finish("d", pending, plan, next_seq, cursor, TickResult(cursor))
    assert cursor.pending == {}
    assert cursor.watch == {"d": WatchedDrop("d.wav", "m1", 2, 5, until=scanner.now + 100.0)}  # the older one made room
    ledger = ledger_of(scanner, "d")
    assert (ledger.last_key, ledger.marker, ledger.next_seq, ledger.key_count, ledger.open_walk) == (
        "d.wav",
        "m1",
        2,
        5,
        None,
    )
    assert ledger.source == str(incoming / "d") and ledger.updated_at == scanner.now


def test_finish_with_nothing_new_keeps_the_last_key(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    pending = walking(next_seq=3, relist_all=False, last_key="d.wav", key_count=5)
    cursor = Cursor(pending={"d": pending})
    scan = Scan("d.wav", [], [], None, 0, finished=True, paused=False)
    scanner._finish("d", pending, Plan([], scan), 3, cursor, TickResult(cursor))
    assert cursor.watch["d"].last_key == "d.wav" and cursor.watch["d"].key_count == 5
    assert ledger_of(scanner, "d").last_key == "d.wav"


def test_finish_an_unfinished_walk_checkpoints_it(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path)
    pending = walking(next_seq=1, relist_all=False, last_key="_READY", key_count=1)
    cursor = Cursor(pending={"d": pending})
    # no batch written yet: the cursor moves, the ledger is not written
    scan = Scan("_READY", [], [], "b.txt", 2, finished=False, paused=True)
    result = TickResult(cursor)
    scanner._finish("d", pending, Plan([], scan), 1, cursor, result)
    assert cursor.pending["d"].walk == Walk(start_seq=1, marker="m1", key_count=3, after="b.txt")
    assert ledger_of(scanner, "d") is None
    assert result.notes == ["drop 'd': paused before an object still in progress"]

    # batches written: an open walk in the ledger, which keeps the previous walk's last key and marker
    pending = cursor.pending["d"]
    scan = Scan("b.txt", [], [], "c.wav", 1, finished=False, paused=False)
    scanner._finish("d", pending, Plan([], scan), 2, cursor, TickResult(cursor))
    assert cursor.pending["d"].next_seq == 2 and cursor.pending["d"].walk.after == "c.wav"
    raw = json.loads(scanner.wh.get_bytes(scanner.wh.path("_drops", "d.json")))
    assert raw["open"] == {"base": "_READY", "full": False, "start_seq": 1, "marker": "m1"}
    assert (raw["last_key"], raw["marker"], raw["seq"], raw["n_keys"]) == ("_READY", "m0", 2, None)


def test_walk_runs_the_steps_in_order(incoming, tmp_path):
    scanner = make_scanner(incoming, tmp_path, max_files_per_tick=2)
    cursor = Cursor(pending={"d": walking()})
    result = TickResult(cursor)
    scanner._walk("d", cursor, result)
    assert [b.batch_id for b in result.batches] == [batch_id_for("d", 0)] and "d" in cursor.pending
    scanner.files_registered = 0  # the next tick
    scanner._walk("d", cursor, result)
    assert [b.batch_id for b in result.batches] == ["d-0000", "d-0001"] and "d" in cursor.watch
    members = [scanner.wh.read_table("batches", b.batch_id)["source_uri"].to_list() for b in result.batches]
    assert members == [[uri(incoming, "a.wav"), uri(incoming, "c.wav")], [uri(incoming, "d.wav")]]


def test_scan_names_links_and_special_files_it_never_reads(incoming, tmp_path):
    """A link to /etc/passwd and a fifo in a local drop are never listed as entries; the
    tick's notes say how many were skipped and the log names them."""
    import os

    drop = incoming / "d"
    (drop / "evil.wav").symlink_to("/etc/passwd")
    os.mkfifo(drop / "pipe.wav")
    scanner = make_scanner(incoming, tmp_path)
    result = TickResult(Cursor())
    scan = scanner._scan("d", walking(), set(), 100, None, result)
    assert rels(scan.new) == ["a.wav", "c.wav", "d.wav"]
    assert result.notes == ["drop 'd': 2 link(s) or special file(s) skipped"]

"""The drop sensor's state: typed dataclasses in, the cursor's and the ledger's JSON out, and
back. Both JSON forms are the first version's, so state saved before the dataclasses reads
the same (and the other way round)."""

from __future__ import annotations

import json

from opentranscribe_pipeline.drops.state import (
    CURSOR_VERSION,
    Cursor,
    Ledger,
    OpenWalk,
    PendingDrop,
    Registered,
    Walk,
    WatchedDrop,
)

# A cursor as the dict-based sensor wrote it: a new drop mid-walk, a drop in its quiet period,
# a registered drop with late files (from a check), a watched drop.
OLD_CURSOR = json.dumps(
    {
        "v": 1,
        "hwm": "drop-3",
        "sweep": "drop-1",
        "pending": {
            "big": {
                "since": 1700000000.5,
                "base": None,
                "full": True,
                "marker": None,
                "seq": 2,
                "walk": {"start_seq": 0, "after": "f0003.wav", "marker": "e1|0|1700000000.000", "n": 4},
            },
            "quiet": {
                "since": 1700000000.0,
                "base": None,
                "full": True,
                "marker": None,
                "seq": 0,
                "sig": "3:0123456789abcdef",
                "changed": 1700000100.0,
            },
            "late": {"since": 1700000200.0, "base": "z.wav", "full": False, "marker": "e2|0|1.000", "seq": 3, "n": 12},
        },
        "watch": {"done": {"last": "y.wav", "marker": "m|0|2.000", "seq": 1, "n": 5, "until": 1700086400.0}},
    },
    sort_keys=True,
    separators=(",", ":"),
)

OLD_LEDGER = json.dumps(
    {
        "drop": "big",
        "source": "/in/big",
        "last_key": None,
        "seq": 2,
        "marker": None,
        "n_keys": None,
        "open": {"base": None, "full": True, "start_seq": 0, "marker": "e1|0|1.000"},
        "updated_at": 1700000000.5,
    }
).encode()


def test_old_cursor_reads_into_typed_state_and_writes_back_unchanged():
    cursor = Cursor.parse(OLD_CURSOR)
    assert (cursor.hwm, cursor.sweep) == ("drop-3", "drop-1")
    assert cursor.pending["big"] == PendingDrop(
        since=1700000000.5,
        last_key=None,
        relist_all=True,
        marker=None,
        next_seq=2,
        walk=Walk(start_seq=0, marker="e1|0|1700000000.000", key_count=4, after="f0003.wav"),
    )
    quiet = cursor.pending["quiet"]
    assert (quiet.quiet_digest, quiet.changed_at, quiet.walk) == ("3:0123456789abcdef", 1700000100.0, None)
    late = cursor.pending["late"]
    assert (late.last_key, late.relist_all, late.marker, late.next_seq, late.key_count) == (
        "z.wav",
        False,
        "e2|0|1.000",
        3,
        12,
    )
    assert cursor.watch == {"done": WatchedDrop("y.wav", "m|0|2.000", 1, 5, until=1700086400.0)}
    assert cursor.dump() == OLD_CURSOR  # byte for byte: the old code reads what the new one writes


def test_cursor_round_trip():
    cursor = Cursor(
        hwm="2026-11-24",
        pending={
            "new": PendingDrop.new(10.0),
            "walking": PendingDrop(
                since=11.0,
                last_key="a.wav",
                relist_all=False,
                marker="m1",
                next_seq=3,
                key_count=7,
                walk=Walk(start_seq=3, marker="m2", key_count=7),
            ),
            "ünï 北京": PendingDrop(
                since=12.0, last_key=None, relist_all=True, marker=None, next_seq=0, quiet_digest="0:x", changed_at=12.0
            ),
        },
        watch={"old": WatchedDrop(None, None, 0, 0, until=99.0)},
    )
    text = cursor.dump()
    assert json.loads(text)["v"] == CURSOR_VERSION and "北京" in text  # readable, not escaped
    assert Cursor.parse(text) == cursor
    assert Cursor.parse(Cursor().dump()) == Cursor()
    # optional fields stay out of the JSON when unset (the cursor is bounded, keep it small)
    assert set(json.loads(text)["pending"]["new"]) == {"since", "base", "full", "marker", "seq"}


def test_walk_saved_before_its_first_step_gets_its_key_count():
    data = json.loads(OLD_CURSOR)
    del data["pending"]["big"]["walk"]["n"]
    data["pending"]["late"]["walk"] = {"start_seq": 3, "after": None, "marker": "e3"}
    cursor = Cursor.parse(json.dumps(data))
    assert cursor.pending["big"].walk.key_count == 0  # whole drop re-listed: counted from its first key
    assert cursor.pending["late"].walk.key_count == 12  # from the last walk's count


def test_unreadable_cursor_starts_over():
    for text in (
        None,
        "",
        "not json",
        "[]",
        json.dumps({"v": CURSOR_VERSION + 1, "hwm": "x"}),
        json.dumps({"v": CURSOR_VERSION, "pending": {"a": {"base": None}}}),  # no "since"
        json.dumps({"v": CURSOR_VERSION, "pending": {"a": {"since": "soon"}}}),
        json.dumps({"v": CURSOR_VERSION, "watch": {"a": "b"}}),
    ):
        assert Cursor.parse(text) == Cursor(), text


def test_copy_is_independent():
    cursor = Cursor.parse(OLD_CURSOR)
    copy = cursor.copy()
    del copy.pending["big"]
    copy.watch.clear()
    copy.hwm = "zzz"
    assert Cursor.parse(OLD_CURSOR) == cursor


def test_old_ledger_reads_and_writes_back_unchanged():
    ledger = Ledger.from_json(OLD_LEDGER)
    assert ledger == Ledger(
        drop="big",
        source="/in/big",
        last_key=None,
        next_seq=2,
        marker=None,
        key_count=None,
        open_walk=OpenWalk(last_key=None, relist_all=True, start_seq=0, marker="e1|0|1.000"),
        updated_at=1700000000.5,
    )
    assert ledger.to_json() == OLD_LEDGER


def test_ledger_round_trip_and_registered_view():
    ledger = Ledger(
        drop="dröp",
        source="s3://b/in/dröp",
        last_key="z.wav",
        next_seq=4,
        marker="m",
        key_count=30,
        open_walk=None,
        updated_at=5.0,
    )
    raw = ledger.to_json()
    assert json.loads(raw)["open"] is None and json.loads(raw)["seq"] == 4
    assert Ledger.from_json(raw) == ledger
    assert ledger.registered() == Registered("z.wav", "m", 4, 30)

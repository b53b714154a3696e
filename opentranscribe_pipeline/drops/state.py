"""The drop engine's state: what the cursor and the ledgers hold, as small typed records.

The **cursor** (JSON, saved by Dagster with every tick) holds the pending and the watched
drops; a **ledger** per registered drop (``<warehouse>/_drops/<prefix>.json``) holds what the
cursor may forget. Each record converts itself to and from the JSON keys the first version of
the sensor wrote (``since``, ``base``, ``seq``, ``n``, ``sig``, ...), so cursors and ledgers
written before these records existed read back unchanged (``CURSOR_VERSION`` 1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ..storage import SourceObject

log = logging.getLogger(__name__)

CURSOR_VERSION = 1


# -- state: what the cursor and the ledgers hold ------------------------------------------------
@dataclass(frozen=True)
class Registered:
    """Where the last finished walk of a drop left it."""

    last_key: str | None  # the last key walked, in the store's order (None: the drop was empty)
    marker: str | None  # the marker's signature the walk answered (None: quiet period, no marker)
    next_seq: int  # the number of the drop's next batch
    key_count: int | None  # keys of the drop up to ``last_key`` (None: unknown)


@dataclass(frozen=True)
class WatchedDrop(Registered):
    """A drop registered recently: checked for late files every tick until ``until``."""

    until: float

    def to_json(self) -> dict:
        return {
            "last": self.last_key,
            "marker": self.marker,
            "seq": self.next_seq,
            "n": self.key_count,
            "until": self.until,
        }

    @classmethod
    def from_json(cls, data: dict) -> WatchedDrop:
        return cls(
            last_key=data.get("last"),
            marker=data.get("marker"),
            next_seq=int(data.get("seq", 0)),
            key_count=data.get("n"),
            until=float(data.get("until", 0)),
        )


@dataclass(frozen=True)
class Walk:
    """A walk in progress (it may span ticks)."""

    start_seq: int  # the drop's first batch number this walk may write
    marker: str | None  # the marker's signature that started it
    key_count: int | None  # keys of the drop dealt with so far, from its first key (None: unknown)
    after: str | None = None  # the last key dealt with (None: nothing yet; start where the drop says)

    def to_json(self) -> dict:
        return {"start_seq": self.start_seq, "after": self.after, "marker": self.marker, "n": self.key_count}

    @classmethod
    def from_json(cls, data: dict, *, default_key_count: int | None) -> Walk:
        return cls(
            start_seq=int(data["start_seq"]),
            marker=data.get("marker"),
            key_count=data.get("n", default_key_count),
            after=data.get("after"),
        )


@dataclass(frozen=True)
class PendingDrop:
    """A drop seen but not (completely) registered: waiting for completion, or being walked."""

    since: float  # when the sensor started tracking it (eviction picks the oldest)
    last_key: str | None  # the previous walk's last key: listings start after it unless ``relist_all``
    relist_all: bool  # list the whole drop (a new drop, or late keys that may sort anywhere)
    marker: str | None  # the marker's signature at the previous registration (None: none yet)
    next_seq: int
    key_count: int | None = None  # keys up to ``last_key`` (None: unknown)
    quiet_digest: str | None = None  # quiet-period mode: the listing's digest when last seen
    changed_at: float | None = None  # ... and when that digest last changed
    walk: Walk | None = None

    @classmethod
    def new(cls, now: float) -> PendingDrop:
        return cls(since=now, last_key=None, relist_all=True, marker=None, next_seq=0)

    def to_json(self) -> dict:
        data = {
            "since": self.since,
            "base": self.last_key,
            "full": self.relist_all,
            "marker": self.marker,
            "seq": self.next_seq,
        }
        optional = {"n": self.key_count, "sig": self.quiet_digest, "changed": self.changed_at}
        data.update({key: value for key, value in optional.items() if value is not None})
        if self.walk is not None:
            data["walk"] = self.walk.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> PendingDrop:
        relist_all, key_count = bool(data.get("full")), data.get("n")
        walk = data.get("walk")
        return cls(
            since=float(data["since"]),
            last_key=data.get("base"),
            relist_all=relist_all,
            marker=data.get("marker"),
            next_seq=int(data.get("seq", 0)),
            key_count=key_count,
            quiet_digest=data.get("sig"),
            changed_at=data.get("changed"),
            walk=Walk.from_json(walk, default_key_count=0 if relist_all else key_count) if walk else None,
        )


@dataclass
class Cursor:
    hwm: str | None = None  # last top-level drop name listed, in the store's order
    sweep: str | None = None  # round-robin position of the sweep (None: from the start)
    pending: dict[str, PendingDrop] = field(default_factory=dict)
    watch: dict[str, WatchedDrop] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            return cls(
                hwm=data.get("hwm"),
                sweep=data.get("sweep"),
                pending={name: PendingDrop.from_json(p) for name, p in data.get("pending", {}).items()},
                watch={name: WatchedDrop.from_json(w) for name, w in data.get("watch", {}).items()},
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # a lost cursor is recoverable: drops are re-discovered, ledgers prevent re-registration
            log.warning("ignoring unreadable drop sensor cursor (%s); starting over", exc)
            return cls()

    def dump(self) -> str:
        data = {
            "v": CURSOR_VERSION,
            "hwm": self.hwm,
            "sweep": self.sweep,
            "pending": {name: p.to_json() for name, p in self.pending.items()},
            "watch": {name: w.to_json() for name, w in self.watch.items()},
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def copy(self) -> Cursor:
        return Cursor(self.hwm, self.sweep, dict(self.pending), dict(self.watch))  # entries are frozen

    def tracks(self, drop: str) -> bool:
        return drop in self.pending or drop in self.watch


@dataclass(frozen=True)
class OpenWalk:
    """The ledger's copy of a walk that wrote batches and has not finished (resumed from
    there if the cursor is lost)."""

    last_key: str | None  # as in PendingDrop
    relist_all: bool
    start_seq: int
    marker: str | None  # the marker's signature that started the walk

    def to_json(self) -> dict:
        return {"base": self.last_key, "full": self.relist_all, "start_seq": self.start_seq, "marker": self.marker}

    @classmethod
    def from_json(cls, data: dict) -> OpenWalk:
        return cls(
            last_key=data.get("base"),
            relist_all=bool(data.get("full")),
            start_seq=int(data["start_seq"]),
            marker=data.get("marker"),
        )


@dataclass(frozen=True)
class Ledger:
    """``<warehouse>/_drops/<batch prefix>.json``: what the cursor may forget about a drop.
    While a walk is open, ``last_key`` and ``marker`` are still the previous walk's and
    ``next_seq`` counts the open walk's batches."""

    drop: str
    source: str  # the drop's URI
    last_key: str | None
    next_seq: int
    marker: str | None
    key_count: int | None  # keys in the drop when last walked (None: unknown)
    open_walk: OpenWalk | None
    updated_at: float

    def registered(self) -> Registered:
        return Registered(self.last_key, self.marker, self.next_seq, self.key_count)

    def to_json(self) -> bytes:
        data = {
            "drop": self.drop,
            "source": self.source,
            "last_key": self.last_key,
            "seq": self.next_seq,
            "marker": self.marker,
            "n_keys": self.key_count,
            "open": self.open_walk.to_json() if self.open_walk else None,
            "updated_at": self.updated_at,
        }
        return json.dumps(data, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Ledger:
        data = json.loads(raw)
        return cls(
            drop=data.get("drop"),
            source=data.get("source"),
            last_key=data["last_key"],
            next_seq=int(data["seq"]),
            marker=data["marker"],
            key_count=data.get("n_keys"),
            open_walk=OpenWalk.from_json(data["open"]) if data.get("open") else None,
            updated_at=float(data.get("updated_at", 0)),
        )


# -- what a tick returns ------------------------------------------------------------------------
@dataclass(frozen=True)
class NewBatch:
    batch_id: str
    drop: str
    source_uri: str  # the drop folder
    files: int  # -1: a batch registered earlier whose run is requested again


@dataclass
class TickResult:
    cursor: Cursor
    batches: list[NewBatch] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.batches)} new batch(es)"] if self.batches else ["no new batch"]
        parts.append(f"{len(self.cursor.pending)} drop(s) pending")
        parts += self.notes[:5]
        parts += [f"error: {e}" for e in self.errors[:3]]
        return "; ".join(parts)


# -- the walk's intermediate results ------------------------------------------------------------
@dataclass(frozen=True)
class Scan:
    """What one tick's listing of a drop found."""

    start: str | None  # the key the listing started after (None: the drop's first key)
    new: list[SourceObject]  # media files no batch holds yet, in the store's order
    positions: list[tuple[str, int]]  # per new file: its key and the keys dealt with up to it
    last_key: str | None  # the last key dealt with (None: none)
    keys_seen: int  # keys dealt with
    finished: bool  # the listing was read to its end
    paused: bool  # stopped before an object still in progress


@dataclass(frozen=True)
class Plan:
    batches: list[list[tuple[SourceObject, float]]]  # (file, duration in seconds) per batch
    scan: Scan  # narrowed to the files those batches hold when the open last batch waits

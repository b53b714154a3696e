"""Drop detection: which drops are complete, and which of their files become new batches.

Dagster-free (the sensor in :mod:`.drop_sensor` wraps it), so the benchmark and the tests run
the same code a daemon tick runs.

Vocabulary
----------
- *drop*: a top-level folder under the incoming prefix.
- *complete*: the drop's marker object (``_READY``) exists (and, for files arriving after a
  registration, was re-written since), or, when a quiet period is configured, nothing under
  the drop changed for that long, as seen by the sensor. Either way no object may still be
  in progress: temporary names (``*.part``, ``*.tmp``, ``.*``, ...) written less than an hour
  ago, and, in local folders, files modified less than ``settle_s`` ago. S3 multipart
  uploads that are not completed are invisible to listings, so they are never seen at all.
- *walk*: registering a complete drop, in four steps (:meth:`DropScanner._walk`): **scan**
  its listing in the store's order for media files no batch holds yet, **plan** them into
  batches (``batching.plan_batches``), **register** each batch (a ``batches`` manifest, then a
  dynamic partition with one run request), **finish** (ledger, cursor). A walk may span ticks
  (``max_files_per_tick``); batches are only ever cut by the batch limits.

State
-----
Per tick the cost follows what is new, never the size of the archive. The state is a few
frozen dataclasses, each with its own JSON form:

- the **cursor** (:class:`Cursor`, JSON, bounded: at most ``max_pending_drops`` +
  ``watch_max`` entries) holds ``hwm``, the last top-level drop name seen, ``sweep``, a
  round-robin position, the ``pending`` drops (:class:`PendingDrop`: seen, not complete or
  being walked, with the :class:`Walk` in progress if any) and the ``watch`` list
  (:class:`WatchedDrop`: drops registered in the last ``watch_s`` seconds);
- a **ledger** object per registered drop (:class:`Ledger`,
  ``<warehouse>/_drops/<drop>.json``) holds what the cursor may forget: the last key walked,
  the next batch number, the marker's signature, and the :class:`OpenWalk` if a walk that
  wrote batches has not finished.

Both JSON forms keep the short keys of the first version (``since``, ``base``, ``seq``, ``n``,
``sig``, ...; the dataclasses give them their names), so cursors and ledgers written by
either version read the same and ``CURSOR_VERSION`` stays 1. A cursor of another version, or
one that does not parse, is dropped with a warning and the sensor starts over: drops are
found again by the listing and the sweep, and their ledgers keep anything from being
registered twice.

A tick: (1) lists top-level folders after ``hwm`` (one request) and admits new drops to
``pending``; (2) checks each watched drop for late files (``HeadObject`` on the marker and
one ``ListObjectsV2``: the whole drop if small, else ``StartAfter`` = last key walked); (3)
sweeps ``sweep_per_tick`` drops of the whole archive, round robin, the same way using their
ledgers (this finds late files in old drops and drops whose names sort before ``hwm``); (4)
advances pending drops: one ``HeadObject`` on the marker while it is missing, a listing of
the drop once it is there (or every tick in quiet-period mode), then the walk.

Late files: a drop that held fewer than ``SMALL_DROP`` keys is re-listed whole when checked
(one request either way) and compared with the number of keys walked, so a late key is seen
wherever it sorts. In a bigger drop ``StartAfter`` only finds keys that sort after the last
key walked; one sorting before it is found when the drop's marker is re-written (the
convention for late files: upload, then write ``_READY`` again): a changed marker makes the
next walk re-list the whole drop and skip every file its batches already hold.

Crash safety: manifests are written before the ledger and before the cursor moves. A tick
that dies in between leaves batches the ledger does not know yet; the next walk of that drop
finds them (``HeadObject`` on the next batch numbers), never registers their files again, and
requests runs for any that has no partition yet.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from ..batching import (
    BatchLimits,
    batch_id_for,
    batch_prefix,
    claim_drop,
    is_media_name,
    known_sources,
    plan_batches,
    probe_durations,
    write_batches,
)
from ..settings import DEFAULT_SETTLE_SECONDS, READY_MARKER
from ..storage import S3Options, SourceObject, Warehouse
from ..storage.sources import Entry, LocalSource, S3Source, safe_relative
from .drop_state import Cursor, Ledger, OpenWalk, PendingDrop, Registered, Walk, WatchedDrop

log = logging.getLogger(__name__)

LEDGER_DIR = "_drops"
# a temporary name untouched for this long is an abandoned upload: ignored, no longer waited for
ABANDONED_S = 3600.0
TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".upload",
    ".uploading",
    ".incomplete",
    "~",
)
# a registered drop with fewer keys than this is re-listed whole when checked (one page)
SMALL_DROP = 1000
# an incomplete drop waiting longer than this may give its pending slot to a newer one
EVICT_AFTER_S = 3600.0
# operating-system droppings: never media, never waited for
JUNK_NAMES = frozenset({".DS_Store", ".localized", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class DropSettings:
    incoming: str
    s3: S3Options = S3Options()
    marker: str = READY_MARKER
    quiet_s: float | None = None  # None: the marker is required
    settle_s: float = DEFAULT_SETTLE_SECONDS  # local folders: a file modified more recently is still being written
    limits: BatchLimits = BatchLimits()
    max_files_per_tick: int = 1000
    max_pending_drops: int = 100
    sweep_per_tick: int = 1
    watch_s: float = 24 * 3600.0
    watch_max: int = 10
    tick_budget_s: float = 40.0  # start no new drop after this (Dagster kills a tick at 60 s)


def is_temp_name(rel: str) -> bool:
    name = posixpath.basename(rel)
    if name in JUNK_NAMES or name.startswith("._"):
        return False
    return name.startswith((".", "~$")) or name.lower().endswith(TEMP_SUFFIXES)


def is_junk(rel: str) -> bool:
    name = posixpath.basename(rel)
    return name in JUNK_NAMES or name.startswith("._")


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


# -- the tick ------------------------------------------------------------------------------------
class DropScanner:
    def __init__(
        self,
        settings: DropSettings,
        source: S3Source | LocalSource,
        warehouse: Warehouse,
        *,
        has_partition: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ):
        self.settings = settings
        self.source = source
        self.wh = warehouse
        self.has_partition = has_partition or (lambda _: False)
        self.clock = clock
        self.log = logger or log
        self.now = clock()
        self.files_registered = 0  # this tick, across drops (bounded by max_files_per_tick)

    # ---- ledger
    def _ledger_path(self, drop: str) -> str:
        return self.wh.path(LEDGER_DIR, f"{batch_prefix(drop)}.json")

    def read_ledger(self, drop: str) -> Ledger | None:
        path = self._ledger_path(drop)
        raw = self.wh.get_if_exists(path)  # one GET on S3
        if raw is None:
            return None
        ledger = Ledger.from_json(raw)
        if ledger.drop != drop:  # two drop names with one batch prefix: cannot happen (hash suffix)
            raise ValueError(f"ledger {path} belongs to drop {ledger.drop!r}")
        return ledger

    def _write_ledger(self, drop: str, registered: Registered, open_walk: OpenWalk | None = None) -> None:
        ledger = Ledger(
            drop=drop,
            source=self.source.drop_uri(drop),
            last_key=registered.last_key,
            next_seq=registered.next_seq,
            marker=registered.marker,
            key_count=registered.key_count,
            open_walk=open_walk,
            updated_at=self.now,
        )
        self.wh.put_bytes(self._ledger_path(drop), ledger.to_json())  # atomic: one PUT, or a rename

    # ---- helpers
    def _in_progress(self, entry: Entry) -> bool:
        if entry.rel == self.settings.marker or is_junk(entry.rel):
            return False
        age = self.now - entry.mtime
        if is_temp_name(entry.rel):
            return age < ABANDONED_S
        return self.source.local and age < self.settings.settle_s

    def _over_time(self) -> bool:
        return self.clock() - self.now > self.settings.tick_budget_s

    @staticmethod
    def _digest(entries: list[Entry]) -> str:
        digest = hashlib.sha256()
        for entry in entries:
            digest.update(f"{entry.rel}\t{entry.signature}\n".encode("utf-8", "surrogateescape"))
        return f"{len(entries)}:{digest.hexdigest()[:16]}"

    def _marker_signature(self, drop: str) -> str | None:
        marker = self.source.stat(drop, self.settings.marker)
        return marker.signature if marker else None

    def _guarded(self, result: TickResult, name: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # one broken drop never stops the others
            msg = f"drop {name!r}: {type(exc).__name__}: {exc}" if name != "(sweep)" else f"sweep: {exc}"
            self.log.error("drop sensor: %s", msg)
            result.errors.append(msg)
            return False

    # ---- phases of a tick
    def tick(self, cursor: Cursor) -> TickResult:
        result = TickResult(cursor=cursor.copy())
        self._discover(result.cursor, result)  # (1)
        self._check_watched(result.cursor, result)  # (2)
        if self.settings.sweep_per_tick > 0 and not self._over_time():  # (3)
            self._guarded(result, "(sweep)", lambda: self._sweep(result.cursor, result))
        self._advance_pending(result.cursor, result)  # (4)
        return result

    def _discover(self, cursor: Cursor, result: TickResult) -> None:
        """New top-level drops after the high-water mark; a failure to list fails the tick
        (the cursor is kept)."""
        names, _ = self.source.list_drops(cursor.hwm, self.settings.max_pending_drops)
        for name in names:
            if not safe_relative(name):
                self.log.warning("drop sensor: ignoring unsafe drop name %r", name)
                cursor.hwm = name
                continue
            if not cursor.tracks(name) and not self._make_room(cursor):
                result.notes.append(f"{len(cursor.pending)} drops pending (the limit): new ones wait")
                break  # hwm stays before it: looked at again next tick
            try:
                self._admit(name, cursor, result)
            except Exception as exc:
                result.errors.append(f"drop {name!r}: {exc}")
                break
            cursor.hwm = name

    def _check_watched(self, cursor: Cursor, result: TickResult) -> None:
        """Recently registered drops: late files."""
        for name, watched in list(cursor.watch.items()):
            if watched.until < self.now:
                del cursor.watch[name]
            elif not self._over_time():
                self._guarded(result, name, lambda n=name, w=watched: self._check(n, w, cursor))

    def _advance_pending(self, cursor: Cursor, result: TickResult) -> None:
        """Pending drops: completion, then the walk. A drop whose step fails keeps the state
        it had before the step."""
        for name in list(cursor.pending):
            if self._over_time() or self.files_registered >= self.settings.max_files_per_tick:
                result.notes.append("tick budget used: the rest continues next tick")
                break
            before = cursor.pending[name]
            ok = self._guarded(result, name, lambda n=name: self._advance(n, cursor, result))
            if not ok and name in cursor.pending:
                cursor.pending[name] = before

    def _make_room(self, cursor: Cursor) -> bool:
        """A free pending slot, if need be by dropping the drop that has waited longest (over
        ``EVICT_AFTER_S``, not being walked): folders abandoned without a marker must not
        block new drops. An evicted drop comes back through the sweep."""
        if len(cursor.pending) < self.settings.max_pending_drops:
            return True
        waiting = [
            name
            for name, pending in cursor.pending.items()
            if pending.walk is None and self.now - pending.since > EVICT_AFTER_S
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda name: cursor.pending[name].since)
        self.log.info(
            "drop sensor: drop %r still incomplete after %.0f h; looked at again by the sweep",
            oldest,
            (self.now - cursor.pending[oldest].since) / 3600,
        )
        del cursor.pending[oldest]
        return True

    def _admit(self, name: str, cursor: Cursor, result: TickResult) -> None:
        """A drop seen for the first time (or again, after the cursor was lost)."""
        if cursor.tracks(name):
            return
        ledger = self.read_ledger(name)
        if ledger is None:
            self._admit_new(name, cursor)
        else:
            self._known(name, ledger, cursor, result)

    def _admit_new(self, name: str, cursor: Cursor) -> None:
        cursor.pending[name] = PendingDrop.new(self.now)
        self.log.info("drop sensor: new drop %r", name)

    def _known(self, name: str, ledger: Ledger, cursor: Cursor, result: TickResult) -> None:
        """A registered drop the cursor does not track (lost cursor, sweep)."""
        if self.now - ledger.updated_at < self.settings.watch_s:
            self._relaunch(name, ledger.next_seq, result)
        if ledger.open_walk is not None:
            self._resume(name, ledger, cursor)
        else:
            self._check(name, ledger.registered(), cursor)

    def _relaunch(self, name: str, next_seq: int, result: TickResult) -> None:
        """Run requests for the drop's newest batches that have no partition: a tick that
        died after writing them, before Dagster saw its result (instance queries only; only
        for ledgers written in the last ``watch_s``, so partitions an operator deleted long
        after stay deleted)."""
        prefix, missing = batch_prefix(name), []
        for seq in range(next_seq - 1, -1, -1):
            batch_id = batch_id_for(prefix, seq)
            if self.has_partition(batch_id):
                break
            missing.append(batch_id)
        for batch_id in reversed(missing):
            result.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), -1))

    def _resume(self, name: str, ledger: Ledger, cursor: Cursor) -> None:
        """A walk interrupted together with its cursor: carry on from its ledger."""
        open_walk = ledger.open_walk
        cursor.pending[name] = PendingDrop(
            since=self.now,
            last_key=open_walk.last_key,
            relist_all=open_walk.relist_all,
            marker=ledger.marker,
            next_seq=ledger.next_seq,
            walk=Walk(
                start_seq=open_walk.start_seq,
                marker=open_walk.marker,
                key_count=0 if open_walk.relist_all else None,
            ),
        )

    def _check(self, name: str, registered: Registered, cursor: Cursor) -> None:
        """Late files in a registered drop: 1 HeadObject + 1 ListObjectsV2. A drop that held
        fewer than a page of keys is listed whole (one request all the same), so a late key
        is seen wherever it sorts; a bigger one from its last key on (``StartAfter``)."""
        marker = self._marker_signature(name)
        rewritten = marker is not None and marker != registered.marker
        key_count, last_key, before_last = registered.key_count, registered.last_key, False
        if key_count is not None and key_count < SMALL_DROP:
            entries, more = self.source.list_drop(name, None, limit=1)
            rels = [entry.rel for entry in entries]
            upto = rels.index(last_key) + 1 if last_key in rels else 0
            late = [entry for entry in entries[upto:] if entry.rel != self.settings.marker]
            # new keys sorting before the last one
            before_last = more or upto > key_count or (last_key not in rels and len(rels) > key_count)
        else:
            entries, _ = self.source.list_drop(name, last_key, limit=1)
            late = [entry for entry in entries if entry.rel != self.settings.marker]
        if not (late or rewritten or before_last):
            return
        if len(cursor.pending) >= self.settings.max_pending_drops:
            return  # looked at again by a later check
        self.log.info(
            "drop sensor: drop %r has %s", name, "a re-written marker" if rewritten else f"{len(late)}+ late object(s)"
        )
        cursor.pending[name] = PendingDrop(
            since=self.now,
            last_key=last_key,
            relist_all=rewritten or before_last,  # late keys may sort anywhere: re-list all of it
            marker=registered.marker,
            next_seq=registered.next_seq,
            key_count=key_count,
        )
        cursor.watch.pop(name, None)

    def _sweep(self, cursor: Cursor, result: TickResult) -> None:
        names, more = self.source.list_drops(cursor.sweep, self.settings.sweep_per_tick)
        cursor.sweep = names[-1] if more and names else None
        for name in names:
            if cursor.tracks(name) or not safe_relative(name):
                continue
            ledger = self.read_ledger(name)
            if ledger is not None:
                self._known(name, ledger, cursor, result)
            elif self._make_room(cursor):
                self._admit_new(name, cursor)  # e.g. a new drop whose name sorts before hwm

    def _advance(self, name: str, cursor: Cursor, result: TickResult) -> None:
        """Completion of a pending drop (marker, or quiet period), then the start of its walk."""
        pending = cursor.pending[name]
        if pending.walk is not None:
            self._walk(name, cursor, result)
            return
        marker = self._marker_signature(name)
        signalled = marker is not None and marker != pending.marker
        if not signalled and self.settings.quiet_s is None:
            return  # waiting for the marker
        # a re-written marker: late keys may sort anywhere, so re-list it all
        relist_all = pending.relist_all or (signalled and pending.marker is not None)
        entries, _ = self.source.list_drop(name, None if relist_all else pending.last_key)
        if not signalled:  # quiet-period rule, on what the sensor itself saw change
            digest = self._digest(entries)
            if digest != pending.quiet_digest:
                pending = cursor.pending[name] = replace(pending, quiet_digest=digest, changed_at=self.now)
            if self.now - pending.changed_at < self.settings.quiet_s:
                return
        pending = cursor.pending[name] = replace(pending, relist_all=relist_all)
        busy = [entry.rel for entry in entries if self._in_progress(entry)]
        if busy:
            result.notes.append(f"drop {name!r}: waiting for {len(busy)} object(s) in progress ({busy[0]})")
            return
        walk = Walk(start_seq=pending.next_seq, marker=marker, key_count=0 if relist_all else pending.key_count)
        cursor.pending[name] = replace(pending, walk=walk)
        self._walk(name, cursor, result, entries=entries)

    # ---- the walk: scan, plan, register, finish
    def _walk(self, name: str, cursor: Cursor, result: TickResult, entries: list[Entry] | None = None) -> None:
        """One tick's share of a drop's walk; ``entries``: the completion check's listing."""
        pending = cursor.pending[name]
        budget = self.settings.max_files_per_tick - self.files_registered
        if budget <= 0:
            return
        # the drop name must be this folder's (one GET once claimed): a name the CLI gave to
        # another source fails the drop with the reason (``DropConflict``), every walk, and
        # nothing of either is touched
        claim_drop(self.wh, name, self.source.drop_uri(name))
        held, next_seq = self._held(name, pending, result)
        scan = self._scan(name, pending, held, budget, entries, result)
        plan = self._plan(scan)
        next_seq = self._register(name, plan, next_seq, result)
        self._finish(name, pending, plan, next_seq, cursor, result)

    def _held(self, name: str, pending: PendingDrop, result: TickResult) -> tuple[set[str], int]:
        """Source URIs the drop's batches already hold that this walk could list again, and
        the next free batch number. Batches past ``pending.next_seq`` were written by a tick
        that died, or by the CLI: their runs are requested again if they have no partition."""
        walk, prefix, next_seq = pending.walk, batch_prefix(name), pending.next_seq
        held: set[str] = set()
        if pending.relist_all and walk.start_seq > 0:  # earlier walks' batches
            held |= known_sources(self.wh, [batch_id_for(prefix, seq) for seq in range(walk.start_seq)])
        if walk.after is None and next_seq > walk.start_seq:  # resumed without progress: this walk's batches
            held |= known_sources(self.wh, [batch_id_for(prefix, seq) for seq in range(walk.start_seq, next_seq)])
        orphans = []
        while self.wh.exists(self.wh.table_file("batches", batch_id_for(prefix, next_seq))):
            orphans.append(batch_id_for(prefix, next_seq))
            next_seq += 1
        if orphans:
            held |= known_sources(self.wh, orphans)
            for batch_id in orphans:
                if not self.has_partition(batch_id):
                    result.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), -1))
        return held, next_seq

    def _pages(self, name: str, start: str | None, budget: int) -> Iterator[tuple[list[Entry], bool]]:
        after = start
        while True:
            page, more = self.source.list_drop(name, after, limit=max(budget, 1000))
            yield page, more
            if not more or not page:
                return
            after = page[-1].rel

    def _scan(
        self,
        name: str,
        pending: PendingDrop,
        held: set[str],
        budget: int,
        entries: list[Entry] | None,
        result: TickResult,
    ) -> Scan:
        """Read the drop's listing in the store's order from where the walk stands, up to
        ``budget`` new media files; never past an object still being written."""
        walk = pending.walk
        start = walk.after if walk.after is not None else (None if pending.relist_all else pending.last_key)
        pages = iter([(entries, False)]) if entries is not None else self._pages(name, start, budget)
        new: list[SourceObject] = []
        positions: list[tuple[str, int]] = []
        last_key, keys_seen, unsafe = None, 0, 0
        stopped = full = exhausted = False
        for page, more in pages:
            for entry in page:
                stopped = self._in_progress(entry)  # never read past something still being written
                full = len(new) >= budget
                if stopped or full:
                    break
                last_key, keys_seen = entry.rel, keys_seen + 1
                if entry.rel == self.settings.marker or not is_media_name(entry.rel):
                    continue
                if not safe_relative(entry.rel):
                    unsafe += 1
                    continue
                uri = self.source.object_uri(name, entry.rel)
                if uri not in held:
                    new.append(SourceObject(uri=uri, relative=entry.rel, size_bytes=entry.size))
                    positions.append((entry.rel, keys_seen))
            if stopped or full:
                break
            exhausted = not more
        if unsafe:
            self.log.warning("drop sensor: drop %r: %d key(s) with '.', '..' or empty segments skipped", name, unsafe)
            result.notes.append(f"drop {name!r}: {unsafe} unsafe key(s) skipped")
        # local folders: links and special files are never listed as entries; say which
        not_read = sorted(
            (rel, why) for (drop, rel), why in getattr(self.source, "skipped", {}).items() if drop == name
        )
        for rel, why in not_read[:20]:
            self.log.warning("drop sensor: drop %r: %s skipped (%s)", name, rel, why)
        if not_read:
            result.notes.append(f"drop {name!r}: {len(not_read)} link(s) or special file(s) skipped")
        return Scan(start, new, positions, last_key, keys_seen, finished=exhausted, paused=stopped)

    def _plan(self, scan: Scan) -> Plan:
        """Batches of the new files, cut by the batch limits only: a walk that continues next
        tick keeps its open last batch for then (and stops its position before it)."""
        if not scan.new:
            return Plan([], scan)
        limits = self.settings.limits
        batches = plan_batches(list(zip(scan.new, probe_durations(scan.new, self.settings.s3))), limits)
        if not scan.finished and len(batches) > 1 and len(batches[-1]) < limits.max_files:
            batches = batches[:-1]
            last_key, keys_seen = scan.positions[sum(len(b) for b in batches) - 1]
            scan = replace(scan, last_key=last_key, keys_seen=keys_seen)
        return Plan(batches, scan)

    def _register(self, name: str, plan: Plan, next_seq: int, result: TickResult) -> int:
        """One manifest per batch (membership fixed from here on); returns the next free number.
        A batch number taken meanwhile (the CLI registering the same folder) fails the step
        (``BatchTaken``): the next tick finds that batch and leaves its files out."""
        for members in plan.batches:
            (batch_id,) = write_batches(self.wh, name, [members], next_seq)
            next_seq += 1
            self.files_registered += len(members)
            result.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), len(members)))
        return next_seq

    def _finish(
        self, name: str, pending: PendingDrop, plan: Plan, next_seq: int, cursor: Cursor, result: TickResult
    ) -> None:
        """Save where the walk stands: the ledger (after the manifests), then the cursor."""
        scan, walk = plan.scan, pending.walk
        key_count = None if walk.key_count is None else walk.key_count + scan.keys_seen
        if not scan.finished:
            self._checkpoint(name, pending, scan, next_seq, key_count, cursor)
            if scan.paused:
                result.notes.append(f"drop {name!r}: paused before an object still in progress")
            return
        last_key = scan.last_key if scan.last_key is not None else scan.start  # in the store's own order
        registered = Registered(last_key, walk.marker, next_seq, key_count)
        self._write_ledger(name, registered)
        del cursor.pending[name]
        cursor.watch[name] = WatchedDrop(
            last_key, walk.marker, next_seq, key_count, until=self.now + self.settings.watch_s
        )
        if len(cursor.watch) > self.settings.watch_max:
            by_age = sorted(cursor.watch, key=lambda drop: cursor.watch[drop].until)
            for old in by_age[: len(cursor.watch) - self.settings.watch_max]:
                del cursor.watch[old]  # the sweep still visits it
        self.log.info(
            "drop sensor: drop %r registered up to %r (%d batch(es) this tick)", name, last_key, len(plan.batches)
        )

    def _checkpoint(
        self, name: str, pending: PendingDrop, scan: Scan, next_seq: int, key_count: int | None, cursor: Cursor
    ) -> None:
        """A walk that continues next tick: its position in the cursor, and, once it wrote
        batches, an open walk in the ledger (which keeps the old last key and marker)."""
        walk = pending.walk
        if scan.last_key is not None:
            walk = replace(walk, after=scan.last_key, key_count=key_count)
        if next_seq != pending.next_seq:
            open_walk = OpenWalk(pending.last_key, pending.relist_all, walk.start_seq, walk.marker)
            self._write_ledger(name, Registered(pending.last_key, pending.marker, next_seq, None), open_walk)
        cursor.pending[name] = replace(pending, next_seq=next_seq, walk=walk)

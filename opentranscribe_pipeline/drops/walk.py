"""The walk of one complete drop, in four named steps: scan, plan, register, finish.

:class:`DropWalker` holds what a walk needs (the settings, the source, the warehouse, the
drop's ledger) and the steps (:meth:`~DropWalker._walk`): **scan** the drop's listing in the
store's order for media files no batch holds yet, **plan** them into batches
(:func:`.batches.plan_batches`), **register** each batch (a ``batches`` manifest, created
never replaced), **finish** (the ledger, then the cursor). A walk may span ticks
(``max_files_per_tick``); batches are only ever cut by the batch limits.
:class:`.scanner.DropScanner` decides when a drop is walked.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from ..storage import SourceObject, Warehouse
from ..storage.sources import Entry, LocalSource, S3Source, safe_relative
from .batches import (
    batch_id_for,
    batch_prefix,
    claim_drop,
    is_media_name,
    known_sources,
    plan_batches,
    probe_durations,
    register_planned,
)
from .rules import ABANDONED_S, LEDGER_DIR, DropSettings, is_junk, is_temp_name
from .state import Cursor, Ledger, NewBatch, OpenWalk, PendingDrop, Plan, Registered, Scan, TickResult, WatchedDrop

log = logging.getLogger(__name__)


class DropWalker:
    """Walks complete drops into batches (Dagster-free); the tick's phases are in
    :class:`.scanner.DropScanner`, which derives from it."""

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
        """One manifest per batch (membership fixed from here on), the CLI's way
        (:func:`.batches.register_planned`); returns the next free number. A batch number
        taken meanwhile (the CLI registering the same folder) is read and its files left out;
        its run is requested here if it has no partition yet, as for any batch found past
        the ledger (:meth:`_held`)."""
        written = register_planned(self.wh, name, plan.batches, next_seq, self.settings.limits)
        for batch_id, members in written.batches:
            self.files_registered += len(members)
            result.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), len(members)))
        for batch_id in written.taken:
            if not self.has_partition(batch_id):
                result.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), -1))
        return written.next_seq

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

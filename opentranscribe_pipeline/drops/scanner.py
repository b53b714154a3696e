"""Drop detection: which drops are complete, and which of their files become new batches.

Dagster-free (the sensor in :mod:`opentranscribe_pipeline.sensors.drop_sensor` wraps it), so
the benchmark and the tests run the same code a daemon tick runs.

Vocabulary
----------
- *drop*: a top-level folder under the incoming prefix.
- *complete*: the drop's marker object (``_READY``) exists (and, for files arriving after a
  registration, was re-written since), or, when a quiet period is configured, nothing under
  the drop changed for that long, as seen by the sensor. Either way no object may still be
  in progress: temporary names (``*.part``, ``*.tmp``, ``.*``, ...) written less than an hour
  ago, and, in local folders, files modified less than ``settle_s`` ago. S3 multipart
  uploads that are not completed are invisible to listings, so they are never seen at all.
- *walk*: registering a complete drop, in four steps (:meth:`.walk.DropWalker._walk`): **scan**
  its listing in the store's order for media files no batch holds yet, **plan** them into
  batches (:func:`.batches.plan_batches`), **register** each batch (a ``batches`` manifest, then a
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

from dataclasses import replace

from ..storage.sources import safe_relative
from .batches import batch_id_for, batch_prefix
from .rules import EVICT_AFTER_S, SMALL_DROP
from .state import Cursor, Ledger, NewBatch, PendingDrop, Registered, TickResult, Walk
from .walk import DropWalker


class DropScanner(DropWalker):
    """One tick over the incoming prefix: new drops, late files, the sweep, pending drops."""

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

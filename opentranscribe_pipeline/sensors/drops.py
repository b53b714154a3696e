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
- *walk*: registering a complete drop: its listing is read in the store's order, media files
  no batch holds yet are probed and cut into batches (``batching.plan_batches``), each batch
  gets a ``batches`` manifest and becomes a dynamic partition with one run request. A walk
  may span ticks (``max_files_per_tick``); batches are only ever cut by the batch limits.

State
-----
Per tick the cost follows what is new, never the size of the archive:

- the **cursor** (JSON, bounded: at most ``max_pending_drops`` + ``watch_max`` entries)
  holds ``hwm``, the last top-level drop name seen, ``sweep``, a round-robin position, the
  ``pending`` drops (seen, not complete or being walked) and the ``watch`` list (drops
  registered in the last ``watch_s`` seconds, with the last key registered);
- a **ledger** object per registered drop, ``<warehouse>/_drops/<drop>.json``, holds what the
  cursor may forget: the last key walked, the next batch number, the marker's signature.

A tick: (1) lists top-level folders after ``hwm`` (one request) and admits new drops to
``pending``; (2) checks each watched drop for late files (``HeadObject`` on the marker and
one ``ListObjectsV2``: the whole drop if small, else ``StartAfter`` = last key walked); (3)
sweeps ``sweep_per_tick``
drops of the whole archive, round robin, the same way using their ledgers (this finds late
files in old drops and drops whose names sort before ``hwm``); (4) advances pending drops:
one ``HeadObject`` on the marker while it is missing, a listing of the drop once it is there
(or every tick in quiet-period mode), then the walk.

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
import json
import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..batching import (
    BatchLimits,
    batch_id_for,
    batch_prefix,
    is_media_name,
    known_sources,
    plan_batches,
    probe_durations,
    write_batches,
)
from ..storage import S3Options, SourceObject, Warehouse, with_retries
from ..storage.sources import Entry, LocalSource, S3Source, safe_relative

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
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
    marker: str = "_READY"
    quiet_s: float | None = None  # None: the marker is required
    settle_s: float = 30.0  # local folders: a file modified more recently is still being written
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


# -- cursor --------------------------------------------------------------------------------
@dataclass
class Cursor:
    hwm: str | None = None  # last top-level drop name listed, in the store's order
    sweep: str | None = None  # round-robin position of the sweep (None: from the start)
    pending: dict[str, dict] = field(default_factory=dict)
    watch: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            return cls(data.get("hwm"), data.get("sweep"), dict(data.get("pending", {})), dict(data.get("watch", {})))
        except (ValueError, TypeError, AttributeError) as exc:
            # a lost cursor is recoverable: drops are re-discovered, ledgers prevent re-registration
            log.warning("ignoring unreadable drop sensor cursor (%s); starting over", exc)
            return cls()

    def dump(self) -> str:
        data = {"v": CURSOR_VERSION, "hwm": self.hwm, "sweep": self.sweep, "pending": self.pending, "watch": self.watch}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def copy(self) -> Cursor:
        return Cursor.parse(self.dump())


@dataclass
class NewBatch:
    batch_id: str
    drop: str
    source_uri: str  # the drop folder
    files: int


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


# -- the tick ------------------------------------------------------------------------------
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
        self.s = settings
        self.source = source
        self.wh = warehouse
        self.has_partition = has_partition or (lambda _: False)
        self.clock = clock
        self.log = logger or log
        self.now = clock()
        self.used = 0  # files registered this tick

    # ---- helpers
    def _ledger_path(self, drop: str) -> str:
        return self.wh.path(LEDGER_DIR, f"{batch_prefix(drop)}.json")

    def read_ledger(self, drop: str) -> dict | None:
        path = self._ledger_path(drop)
        try:  # a ranged read: one GET (s3fs would HEAD first for a plain one)
            raw = with_retries(
                lambda: self.wh.fs.cat_file(path, start=0), what=f"reading {path}", endpoint=self.wh.endpoint
            )
        except FileNotFoundError:
            return None
        data = json.loads(raw)
        if data.get("drop") != drop:  # two drop names with one batch prefix: cannot happen (hash suffix)
            raise ValueError(f"ledger {self._ledger_path(drop)} belongs to drop {data.get('drop')!r}")
        return data

    def _write_ledger(
        self,
        drop: str,
        *,
        last_key: str | None,
        seq: int,
        marker: str | None,
        n_keys: int | None = None,
        open_walk=None,
    ) -> None:
        data = {
            "drop": drop,
            "source": self.source.drop_uri(drop),
            "last_key": last_key,
            "seq": seq,
            "marker": marker,
            "n_keys": n_keys,  # keys in the drop when last walked (None: unknown)
            "open": open_walk,
            "updated_at": self.now,
        }
        raw, path = json.dumps(data, ensure_ascii=False).encode(), self._ledger_path(drop)
        if self.wh.is_local:
            self.wh.put_bytes(path, raw)  # temporary file, then rename
        else:  # one S3 PUT is atomic already: readers see the old object or the new one
            with_retries(lambda: self.wh.fs.pipe_file(path, raw), what=f"writing {path}", endpoint=self.wh.endpoint)

    def _in_progress(self, e: Entry) -> bool:
        if e.rel == self.s.marker or is_junk(e.rel):
            return False
        age = self.now - e.mtime
        if is_temp_name(e.rel):
            return age < ABANDONED_S
        return self.source.local and age < self.s.settle_s

    def _over_time(self) -> bool:
        return self.clock() - self.now > self.s.tick_budget_s

    @staticmethod
    def _digest(entries: list[Entry]) -> str:
        h = hashlib.sha256()
        for e in entries:
            h.update(f"{e.rel}\t{e.signature}\n".encode("utf-8", "surrogateescape"))
        return f"{len(entries)}:{h.hexdigest()[:16]}"

    def _marker_sig(self, drop: str) -> str | None:
        mk = self.source.stat(drop, self.s.marker)
        return mk.signature if mk else None

    # ---- phases
    def tick(self, cursor: Cursor) -> TickResult:
        cur = cursor.copy()
        res = TickResult(cursor=cur)
        self.wh.fs.invalidate_cache()  # listings cached by s3fs in a long-lived code server go stale

        # (1) new top-level drops; a failure here fails the tick (the cursor is kept)
        names, _ = self.source.list_drops(cur.hwm, self.s.max_pending_drops)
        for name in names:
            if not safe_relative(name):
                self.log.warning("drop sensor: ignoring unsafe drop name %r", name)
                cur.hwm = name
                continue
            if name not in cur.pending and name not in cur.watch and not self._make_room(cur):
                res.notes.append(f"{len(cur.pending)} drops pending (the limit): new ones wait")
                break  # hwm stays before it: looked at again next tick
            try:
                self._admit(name, cur, res)
            except Exception as exc:
                res.errors.append(f"drop {name!r}: {exc}")
                break
            cur.hwm = name

        # (2) recently registered drops: late files
        for name, w in list(cur.watch.items()):
            if w.get("until", 0) < self.now:
                del cur.watch[name]
            elif not self._over_time():
                self._guarded(res, name, lambda n=name, w=w: self._check(n, w, cur))

        # (3) sweep: a few drops of the whole archive per tick
        if self.s.sweep_per_tick > 0 and not self._over_time():
            self._guarded(res, "(sweep)", lambda: self._sweep(cur, res))

        # (4) pending drops: completion, then the walk
        for name in list(cur.pending):
            if self._over_time() or self.used >= self.s.max_files_per_tick:
                res.notes.append("tick budget used: the rest continues next tick")
                break
            before = json.dumps(cur.pending[name])
            ok = self._guarded(res, name, lambda n=name: self._advance(n, cur, res))
            if not ok and name in cur.pending:
                cur.pending[name] = json.loads(before)
        return res

    def _make_room(self, cur: Cursor) -> bool:
        """A free pending slot, if need be by dropping the drop that has waited longest (over
        ``EVICT_AFTER_S``, not being walked): folders abandoned without a marker must not
        block new drops. An evicted drop comes back through the sweep."""
        if len(cur.pending) < self.s.max_pending_drops:
            return True
        waiting = [n for n, p in cur.pending.items() if "walk" not in p and self.now - p["since"] > EVICT_AFTER_S]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda n: cur.pending[n]["since"])
        self.log.info(
            "drop sensor: drop %r still incomplete after %.0f h; looked at again by the sweep",
            oldest,
            (self.now - cur.pending[oldest]["since"]) / 3600,
        )
        del cur.pending[oldest]
        return True

    def _guarded(self, res: TickResult, name: str, fn) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # one broken drop never stops the others
            msg = f"drop {name!r}: {type(exc).__name__}: {exc}" if name != "(sweep)" else f"sweep: {exc}"
            self.log.error("drop sensor: %s", msg)
            res.errors.append(msg)
            return False

    def _admit(self, name: str, cur: Cursor, res: TickResult, ledger: dict | None | bool = False) -> None:
        """A drop seen for the first time (or again, after the cursor was lost); ``ledger``
        if the caller has read it already."""
        if name in cur.pending or name in cur.watch:
            return
        if ledger is False:
            ledger = self.read_ledger(name)
        if ledger is None:
            cur.pending[name] = {"since": self.now, "base": None, "full": True, "marker": None, "seq": 0}
            self.log.info("drop sensor: new drop %r", name)
        else:
            self._known(name, ledger, cur, res)

    def _known(self, name: str, ledger: dict, cur: Cursor, res: TickResult) -> None:
        """A registered drop the cursor does not track (lost cursor, sweep)."""
        if self.now - ledger.get("updated_at", 0) < self.s.watch_s:
            self._relaunch(name, ledger["seq"], res)
        if ledger.get("open"):
            self._resume(name, ledger, cur)
        else:
            w = {
                "last": ledger["last_key"],
                "marker": ledger["marker"],
                "seq": ledger["seq"],
                "n": ledger.get("n_keys"),
            }
            self._check(name, w, cur)

    def _relaunch(self, name: str, seq: int, res: TickResult) -> None:
        """Run requests for the drop's newest batches that have no partition: a tick that
        died after writing them, before Dagster saw its result (instance queries only; only
        for ledgers written in the last ``watch_s``, so partitions an operator deleted long
        after stay deleted)."""
        prefix, missing = batch_prefix(name), []
        for s in range(seq - 1, -1, -1):
            batch_id = batch_id_for(prefix, s)
            if self.has_partition(batch_id):
                break
            missing.append(batch_id)
        for batch_id in reversed(missing):
            res.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), -1))

    def _resume(self, name: str, ledger: dict, cur: Cursor) -> None:
        """A walk interrupted together with its cursor: carry on from its ledger."""
        o = ledger["open"]
        cur.pending[name] = {
            "since": self.now,
            "base": o.get("base"),
            "full": bool(o.get("full")),
            "marker": ledger.get("marker"),
            "seq": ledger["seq"],
            "walk": {"start_seq": o["start_seq"], "after": None, "marker": o.get("marker")},
        }

    def _check(self, name: str, w: dict, cur: Cursor) -> None:
        """Late files in a registered drop: 1 HeadObject + 1 ListObjectsV2. A drop that held
        fewer than a page of keys is listed whole (one request all the same), so a late key
        is seen wherever it sorts; a bigger one from its last key on (``StartAfter``)."""
        marker = self._marker_sig(name)
        rewritten = marker is not None and marker != w.get("marker")
        n, last, anywhere = w.get("n"), w.get("last"), False
        if n is not None and n < SMALL_DROP:
            entries, more = self.source.list_drop(name, None, limit=1)
            rels = [e.rel for e in entries]
            upto = rels.index(last) + 1 if last in rels else 0
            late = [e for e in entries[upto:] if e.rel != self.s.marker]
            anywhere = more or upto > n or (last not in rels and len(rels) > n)  # new keys before the last one
        else:
            entries, _ = self.source.list_drop(name, last, limit=1)
            late = [e for e in entries if e.rel != self.s.marker]
        if not (late or rewritten or anywhere):
            return
        if len(cur.pending) >= self.s.max_pending_drops:
            return  # looked at again by a later check
        self.log.info(
            "drop sensor: drop %r has %s", name, "a re-written marker" if rewritten else f"{len(late)}+ late object(s)"
        )
        cur.pending[name] = {
            "since": self.now,
            "base": w.get("last"),
            "full": rewritten or anywhere,  # late keys may sort anywhere: re-list all of it
            "marker": w.get("marker"),
            "seq": w.get("seq", 0),
            "n": n,
        }
        cur.watch.pop(name, None)

    def _sweep(self, cur: Cursor, res: TickResult) -> None:
        names, more = self.source.list_drops(cur.sweep, self.s.sweep_per_tick)
        cur.sweep = names[-1] if more and names else None
        for name in names:
            if name in cur.pending or name in cur.watch or not safe_relative(name):
                continue
            ledger = self.read_ledger(name)
            if ledger is None:
                if self._make_room(cur):
                    self._admit(name, cur, res, ledger=None)  # e.g. a new drop whose name sorts before hwm
            else:
                self._known(name, ledger, cur, res)

    def _advance(self, name: str, cur: Cursor, res: TickResult) -> None:
        p = cur.pending[name]
        if "walk" in p:
            self._walk(name, p, cur, res)
            return
        marker = self._marker_sig(name)
        signalled = marker is not None and marker != p.get("marker")
        if not signalled and self.s.quiet_s is None:
            return  # waiting for the marker
        full = p["full"] or (signalled and p.get("marker") is not None)
        entries, _ = self.source.list_drop(name, None if full else p["base"])
        if not signalled:  # quiet-period rule, on what the sensor itself saw change
            digest = self._digest(entries)
            if digest != p.get("sig"):
                p["sig"], p["changed"] = digest, self.now
            if self.now - p["changed"] < self.s.quiet_s:
                return
        p["full"] = full  # a re-written marker: late keys may sort anywhere, so re-list it all
        busy = [e.rel for e in entries if self._in_progress(e)]
        if busy:
            res.notes.append(f"drop {name!r}: waiting for {len(busy)} object(s) in progress ({busy[0]})")
            return
        p["walk"] = {"start_seq": p["seq"], "after": None, "marker": marker}
        self._walk(name, p, cur, res, entries=entries)

    def _walk(self, name: str, p: dict, cur: Cursor, res: TickResult, entries: list[Entry] | None = None) -> None:
        w = p["walk"]
        budget = self.s.max_files_per_tick - self.used
        if budget <= 0:
            return
        prefix = batch_prefix(name)
        seq = p["seq"]

        # what the drop's batches already hold
        known: set[str] = set()
        if p["full"] and w["start_seq"] > 0:
            known |= known_sources(self.wh, [batch_id_for(prefix, s) for s in range(w["start_seq"])])
        if w.get("after") is None and seq > w["start_seq"]:  # resumed without progress: this walk's batches
            known |= known_sources(self.wh, [batch_id_for(prefix, s) for s in range(w["start_seq"], seq)])
        orphans = []  # batches nobody told us about: a tick that died, or the CLI
        while self.wh.exists(self.wh.table_file("batches", batch_id_for(prefix, seq))):
            orphans.append(batch_id_for(prefix, seq))
            seq += 1
        if orphans:
            known |= known_sources(self.wh, orphans)
            for b in orphans:
                if not self.has_partition(b):
                    res.batches.append(NewBatch(b, name, self.source.drop_uri(name), -1))

        start = w["after"] if w.get("after") is not None else (None if p["full"] else p["base"])

        def pages():
            if entries is not None:  # the completion check's listing, already in hand
                yield entries, False
                return
            after = start
            while True:
                page, more = self.source.list_drop(name, after, limit=max(budget, 1000))
                yield page, more
                if not more or not page:
                    return
                after = page[-1].rel

        new: list[SourceObject] = []
        new_rel: list[str] = []
        new_count: list[int] = []  # keys dealt with up to each new file
        consumed = None  # the last entry dealt with, in the store's order
        if "n" not in w:  # keys of the drop walked so far (None: unknown)
            w["n"] = 0 if p["full"] else p.get("n")
        count = 0
        stopped = cut = exhausted = False
        unsafe = 0
        for page, more in pages():
            for e in page:
                if self._in_progress(e):
                    stopped = True  # never read past something still being written
                    break
                if len(new) >= budget:
                    cut = True
                    break
                consumed = e.rel
                count += 1
                if e.rel == self.s.marker or not is_media_name(e.rel):
                    continue
                if not safe_relative(e.rel):
                    unsafe += 1
                    continue
                uri = self.source.object_uri(name, e.rel)
                if uri in known:
                    continue
                new.append(SourceObject(uri=uri, relative=e.rel, size_bytes=e.size))
                new_rel.append(e.rel)
                new_count.append(count)
            if stopped or cut:
                break
            exhausted = not more
        if unsafe:
            self.log.warning("drop sensor: drop %r: %d key(s) with '.', '..' or empty segments skipped", name, unsafe)
            res.notes.append(f"drop {name!r}: {unsafe} unsafe key(s) skipped")

        finished = exhausted and not (stopped or cut)
        planned = plan_batches(list(zip(new, probe_durations(new, self.s.s3))), self.s.limits) if new else []
        if not finished and len(planned) > 1 and len(planned[-1]) < self.s.limits.max_files:
            planned = planned[:-1]  # the open last batch waits for the rest: ticks never cut batches
            kept = sum(len(b) for b in planned)
            consumed, count = new_rel[kept - 1], new_count[kept - 1]
        ids = []
        for b_members in planned:
            (batch_id,) = write_batches(self.wh, name, [b_members], seq)
            ids.append(batch_id)
            seq += 1
            self.used += len(b_members)
            res.batches.append(NewBatch(batch_id, name, self.source.drop_uri(name), len(b_members)))
        n_keys = None if w["n"] is None else w["n"] + count
        if finished:
            last = consumed if consumed is not None else start  # the last key, in the store's own order
            self._write_ledger(name, last_key=last, seq=seq, marker=w["marker"], n_keys=n_keys)
            del cur.pending[name]
            cur.watch[name] = {
                "last": last,
                "marker": w["marker"],
                "seq": seq,
                "n": n_keys,
                "until": self.now + self.s.watch_s,
            }
            if len(cur.watch) > self.s.watch_max:
                for old in sorted(cur.watch, key=lambda n: cur.watch[n]["until"])[: len(cur.watch) - self.s.watch_max]:
                    del cur.watch[old]  # the sweep still visits it
            self.log.info("drop sensor: drop %r registered up to %r (%d batch(es) this tick)", name, last, len(ids))
        else:
            if consumed is not None:
                w["after"], w["n"] = consumed, n_keys
            if seq != p["seq"]:
                open_walk = {"base": p["base"], "full": p["full"], "start_seq": w["start_seq"], "marker": w["marker"]}
                # the ledger keeps the old last key and marker until the walk ends
                self._write_ledger(name, last_key=p["base"], seq=seq, marker=p.get("marker"), open_walk=open_walk)
            p["seq"] = seq
            if stopped:
                res.notes.append(f"drop {name!r}: paused before an object still in progress")

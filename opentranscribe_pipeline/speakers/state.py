"""Archive-wide speaker state: generations, one manifest written last, one writer at a time.

The state is four tables that must agree: ``speaker_clusters`` (the global id of every local
speaker), ``speaker_centroids`` (one centroid per id, merged ids pointing to their heir),
``speaker_profiles`` (names) and ``speaker_suggestions``, plus the number of the next id to
mint. A kill between two of their files, or two machines writing at once, must never lose
or reuse an id. So:

- **Generations.** A writer puts every file it changes under ``<root>/_speakers/gen-<N>/``
  (immutable once written), then commits one small ``<root>/_speakers/manifest.json`` naming
  the generation's files (unchanged cluster parts keep pointing to the generation that wrote
  them) and ``next_number``. The manifest is the commit point: a kill before it leaves the
  previous generation in force, whole; a kill after it leaves the new one.
- **Compare-and-swap.** The manifest is written only if it is still the version the writer
  read (``storage.conditional``: S3 ``If-Match``/``If-None-Match``, ``flock`` locally), so of
  two writers on two machines exactly one commits; the other gets
  :class:`ConcurrentSpeakerWrite` and nothing of its work is visible.
- **A lease** (``_speakers/lease.json``, created conditionally, with an expiry) makes a second
  writer wait for the first instead of failing; an expired lease (its holder died) is taken
  over conditionally.
- **Ids** are minted from ``next_number`` of the manifest, which is never behind any id the
  generation holds.
- **Published copies.** After a commit the generation is copied to the tables analysts read,
  ``<root>/speaker_clusters/part-<batch_id>.parquet`` and ``<root>/<table>/part-0.parquet``
  (each copy atomic); ``_speakers/published.json`` records which generation they show. A kill
  mid-copy is repaired by the next writer (:meth:`SpeakerState.ensure_published`). Readers in
  this package (the clustering asset, the CLI) read the generation itself.

A warehouse written before generations existed has no manifest: its visible tables are read
as generation 0 (the next id above every id found in clusters, centroids and profiles) and
the first commit turns it into generations.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import polars as pl

from ..schemas import (
    EMBEDDING_DIM,
    SpeakerCentroids,
    SpeakerClusters,
    SpeakerEmbeddings,
    SpeakerProfiles,
    SpeakerSuggestions,
    conform,
    empty_frame,
    utc_now,
)
from ..storage import Warehouse
from ..storage.conditional import PreconditionFailed, read_versioned, write_if
from .cluster import VoiceIndex, id_number, normalize
from .names import RefusedName, check_profiles, validate_name

log = logging.getLogger(__name__)

CLUSTERS = "speaker_clusters"
CENTROIDS = "speaker_centroids"
PROFILES = "speaker_profiles"
SUGGESTIONS = "speaker_suggestions"
ARCHIVE_TABLES = (CLUSTERS, CENTROIDS, PROFILES, SUGGESTIONS)
SMALL_TABLES = (CENTROIDS, PROFILES, SUGGESTIONS)
MODELS = {
    CLUSTERS: SpeakerClusters,
    CENTROIDS: SpeakerCentroids,
    PROFILES: SpeakerProfiles,
    SUGGESTIONS: SpeakerSuggestions,
}
STATE_DIR = "_speakers"
FORMAT = 1
_PART_PREFIX, _PART_SUFFIX = "part-", ".parquet"
_COMPACT_PREFIX = "compact-"  # speaker_clusters/compact-<generation>.parquet: every batch not in a delta part
COMPACT_AFTER = 32  # delta parts that may pile up before the next commit compacts them
_GEN_RE = re.compile(r"gen-(\d+)/")
T = TypeVar("T")


class ConcurrentSpeakerWrite(RuntimeError):
    """Another writer committed a generation while this one worked; nothing of this one is
    visible. Running it again starts from the new generation."""


class SpeakerStateBusy(RuntimeError):
    """Another writer holds the lease and did not finish within the wait."""


@dataclass(frozen=True)
class Generation:
    """One consistent state: where each table's file is (relative to the warehouse root)."""

    number: int
    next_number: int  # the next global id number to mint
    tables: dict[str, str] = field(default_factory=dict)  # centroids/profiles/suggestions -> path
    clusters: dict[str, str] = field(default_factory=dict)  # batch_id -> its delta part (since the base)
    base: str | None = None  # the compact part: every other batch's rows, sorted by global id
    base_batches: tuple[str, ...] = ()  # the batches the base holds
    version: str | None = None  # the manifest's storage version this was read with (None: none)

    @property
    def batches(self) -> set[str]:
        return set(self.base_batches) | set(self.clusters)

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "generation": self.number,
            "next_number": self.next_number,
            "tables": self.tables,
            "clusters": dict(sorted(self.clusters.items())),
            "base": self.base,
            "base_batches": sorted(self.base_batches),
            "written_at": utc_now().isoformat(),
            "writer": f"{socket.gethostname()}:{os.getpid()}",
        }
        return json.dumps(body, ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, version: str) -> Generation:
        body = json.loads(raw)
        if body.get("format") != FORMAT:
            raise ValueError(f"speaker state manifest format {body.get('format')!r}, expected {FORMAT}")
        return cls(
            number=int(body["generation"]),
            next_number=int(body["next_number"]),
            tables=dict(body.get("tables", {})),
            clusters=dict(body.get("clusters", {})),
            base=body.get("base"),
            base_batches=tuple(body.get("base_batches", ())),
            version=version,
        )


def visible_table_path(table: str) -> str:
    return f"{table}/part-0.parquet"


def visible_cluster_path(batch_id: str) -> str:
    return f"{CLUSTERS}/{_PART_PREFIX}{batch_id}{_PART_SUFFIX}"


@dataclass(frozen=True)
class Change:
    """What one writer changes: new rows per table (None: unchanged)."""

    clusters: dict[str, pl.DataFrame | None] = field(default_factory=dict)  # batch -> rows (None: drop the part)
    replace_all_clusters: bool = False  # batches not in ``clusters`` lose their part
    centroids: pl.DataFrame | None = None
    profiles: pl.DataFrame | None = None
    suggestions: pl.DataFrame | None = None
    next_number: int | None = None


@dataclass(frozen=True)
class ProfileNames:
    """The names in force (valid ones only), whether they come from a hand-edited
    ``speaker_profiles`` file, and the rows refused by the name rule."""

    names: pl.DataFrame
    edited: bool
    refused: list[RefusedName] = field(default_factory=list)


class SpeakerState:
    """The archive-wide speaker state of one warehouse (Dagster-free)."""

    def __init__(self, wh: Warehouse, *, lease_ttl_s: float = 900.0, lease_wait_s: float = 600.0):
        self.wh = wh
        self.lease_ttl_s = lease_ttl_s
        self.lease_wait_s = lease_wait_s

    def _path(self, *parts: str) -> str:
        return self.wh.path(*parts)

    @property
    def manifest_path(self) -> str:
        return self._path(STATE_DIR, "manifest.json")

    # -- reading ---------------------------------------------------------------------------
    def current(self) -> Generation:
        """The committed generation (generation 0 from the visible tables when none was)."""
        found = read_versioned(self.wh, self.manifest_path)
        if found is not None:
            return Generation.from_json(found.data, found.version)
        return self._legacy()

    def _legacy(self) -> Generation:
        """A warehouse written before generations: its visible tables as they are."""
        tables = {t: visible_table_path(t) for t in SMALL_TABLES}
        names = self.wh.list_names(self._path(CLUSTERS))
        batches = [n[len(_PART_PREFIX) : -len(_PART_SUFFIX)] for n in names if n.startswith(_PART_PREFIX)]
        gen = Generation(0, 1, tables, {b: visible_cluster_path(b) for b in batches if b})
        ids = [
            *self.read(gen, CENTROIDS)["global_speaker_id"].to_list(),
            *self.read(gen, PROFILES)["global_speaker_id"].to_list(),
            *self.read_clusters(gen)["global_speaker_id"].to_list(),
        ]
        return replace(gen, next_number=max((id_number(g) for g in ids), default=0) + 1)

    def read(self, gen: Generation, table: str) -> pl.DataFrame:
        """One of the small tables (centroids, profiles, suggestions) of ``gen``."""
        path = gen.tables.get(table)
        df = self.wh.read_parquet(self._path(path)) if path else None
        return conform(df, MODELS[table]) if df is not None else empty_frame(MODELS[table])

    def profiles(self, gen: Generation) -> tuple[pl.DataFrame, bool]:
        """The names of ``gen``, or the visible ``speaker_profiles`` file when a person wrote
        it by hand since (it differs from what ``gen`` published); and whether it was. Call
        after :meth:`ensure_published`, so a copy a killed writer left behind is not taken
        for an edit. Names the rule refuses (``speakers/names.py``) are left out (see
        :meth:`profiles_checked`)."""
        checked = self.profiles_checked(gen)
        return checked.names, checked.edited

    def profiles_checked(self, gen: Generation) -> ProfileNames:
        """:meth:`profiles`, and the rows whose names :func:`~.names.validate_name` refuses
        (a hand-written file with a NUL, a newline, a 10,000-character name ...): each is
        logged as a warning naming its global id and the reason, and never shown anywhere."""
        names, edited = self._profiles_as_written(gen)
        valid, refused = check_profiles(names)
        for row in refused:
            log.warning(
                "speaker_profiles: the name of %s is refused and not used: %s", row.global_speaker_id, row.reason
            )
        return ProfileNames(valid, edited, refused)

    def _profiles_as_written(self, gen: Generation) -> tuple[pl.DataFrame, bool]:
        names = self.read(gen, PROFILES)
        path = visible_table_path(PROFILES)
        if gen.tables.get(PROFILES) == path:
            return names, False  # generation 0: the visible file is the state
        visible = self.wh.read_parquet(self._path(path))
        if visible is None:
            return names, False
        visible = conform(visible, SpeakerProfiles)
        edited = not visible.sort("global_speaker_id").equals(names.sort("global_speaker_id"))
        if edited:
            log.info("speaker_profiles was edited by hand: %d names taken from it", visible.height)
        return (visible, True) if edited else (names, False)

    def read_clusters(self, gen: Generation, batch_ids: list[str] | None = None) -> pl.DataFrame:
        """``speaker_clusters`` rows of the named batches (or all): the base part (one file)
        filtered to them, plus their delta parts."""
        wanted = sorted(gen.batches) if batch_ids is None else [b for b in batch_ids if b in gen.batches]
        frames = []
        from_base = [b for b in wanted if b in set(gen.base_batches)]
        if from_base and gen.base:
            base = self.wh.read_parquet(self._path(gen.base))
            if base is not None:
                frames.append(base if batch_ids is None else base.filter(pl.col("batch_id").is_in(from_base)))
        for b in wanted:
            if b in gen.clusters and (df := self.wh.read_parquet(self._path(gen.clusters[b]))) is not None:
                frames.append(df)
        return pl.concat([conform(f, SpeakerClusters) for f in frames]) if frames else empty_frame(SpeakerClusters)

    def locations(self, gen: Generation, global_speaker_ids: list[str]) -> pl.DataFrame:
        """Where the named global ids speak: ``global_speaker_id, batch_id, media_id,
        speaker``. Reads the base part (one file, sorted by global id, so its row-group
        statistics skip what does not match) and the few delta parts."""
        ids = pl.Series(global_speaker_ids, dtype=pl.Utf8).implode()
        columns = ["global_speaker_id", "batch_id", "media_id", "speaker"]
        frames = []
        if gen.base:
            data = self.wh.get_if_exists(self._path(gen.base))
            if data is not None:
                frames.append(
                    pl.scan_parquet(io.BytesIO(data))
                    .select(columns)
                    .filter(pl.col("global_speaker_id").is_in(ids))
                    .collect()
                )
        for path in gen.clusters.values():
            df = self.wh.read_parquet(self._path(path))
            if df is not None:
                frames.append(df.select(columns).filter(pl.col("global_speaker_id").is_in(ids)))
        if not frames:
            return pl.DataFrame(schema={c: pl.Utf8 for c in columns})
        return pl.concat(frames).sort(columns)

    # -- writing ---------------------------------------------------------------------------
    def commit(self, base: Generation, change: Change) -> Generation:
        """Write the changed files as generation ``base.number + 1``, then the manifest, if
        the manifest is still ``base``; then publish. Raises :class:`ConcurrentSpeakerWrite`
        when another writer committed first."""
        number = base.number + 1
        gen_dir = f"{STATE_DIR}/gen-{number:06d}"
        tables = dict(base.tables)
        for table, df in (
            (CENTROIDS, change.centroids),
            (PROFILES, change.profiles),
            (SUGGESTIONS, change.suggestions),
        ):
            if df is not None:
                MODELS[table].validate(df)
                tables[table] = f"{gen_dir}/{table}.parquet"
                self.wh.write_parquet(self._path(tables[table]), df)
        clusters, compact, compact_batches = self._cluster_parts(base, change, gen_dir)
        next_number = max(base.next_number, change.next_number or 0)
        new = Generation(number, next_number, tables, clusters, compact, compact_batches)
        try:
            version = write_if(self.wh, self.manifest_path, new.to_json(), expect=base.version)
        except PreconditionFailed:
            raise ConcurrentSpeakerWrite(
                f"another writer committed speaker state generation {number} (or later) in {self.wh.root_uri} "
                "while this run worked; nothing of this run was committed: run it again"
            ) from None
        new = replace(new, version=version)
        self.publish(new, base)
        self._collect_garbage(new)
        return new

    def _cluster_parts(
        self, base: Generation, change: Change, gen_dir: str
    ) -> tuple[dict[str, str], str | None, tuple[str, ...]]:
        """Write the changed batches' rows: as delta parts (one small file per batch, O(batch)),
        or, on a full re-clustering, when a batch already in the base changes, or when more
        than ``COMPACT_AFTER`` deltas pile up, as a new compact base of every batch."""
        changed = {b: rows for b, rows in change.clusters.items() if rows is not None and not rows.is_empty()}
        dropped = {b for b, rows in change.clusters.items() if rows is None or rows.is_empty()}
        deltas = {b: p for b, p in base.clusters.items() if b not in change.clusters}
        touches_base = bool(set(change.clusters) & set(base.base_batches))
        if not (change.replace_all_clusters or touches_base or len(deltas) + len(changed) > COMPACT_AFTER):
            for batch_id, rows in sorted(changed.items()):
                deltas[batch_id] = f"{gen_dir}/{CLUSTERS}/{_PART_PREFIX}{batch_id}{_PART_SUFFIX}"
                self.wh.write_parquet(self._path(deltas[batch_id]), rows.sort("media_id", "speaker"))
            return deltas, base.base, base.base_batches
        if change.replace_all_clusters:
            frames = list(changed.values())
        else:
            keep = sorted(base.batches - set(change.clusters))
            frames = [self.read_clusters(base, keep), *changed.values()] if keep else list(changed.values())
        rows = (
            pl.concat([conform(f, SpeakerClusters) for f in frames]) if frames else empty_frame(SpeakerClusters)
        ).sort("global_speaker_id", "batch_id", "media_id", "speaker")
        batches = tuple(sorted(set(rows["batch_id"].to_list()) - dropped))
        if not batches:
            return {}, None, ()
        path = f"{gen_dir}/{CLUSTERS}/{_COMPACT_PREFIX}{gen_dir.rsplit('-', 1)[-1]}{_PART_SUFFIX}"
        self.wh.write_parquet(self._path(path), rows.filter(pl.col("batch_id").is_in(list(batches))))
        return {}, path, batches

    def publish(self, gen: Generation, previous: Generation | None = None) -> None:
        """Copy ``gen`` to the tables analysts read: what changed since ``previous``, or
        everything; then remove visible cluster parts the generation no longer has. Each copy
        is atomic; ``published.json`` is written last."""
        for table in SMALL_TABLES:
            path = gen.tables.get(table)
            if path and (previous is None or previous.tables.get(table) != path):
                self._copy(path, visible_table_path(table))
        wanted = {visible_cluster_path(b): p for b, p in gen.clusters.items()}
        if gen.base:
            wanted[f"{CLUSTERS}/{posixpath.basename(gen.base)}"] = gen.base
        before = set(previous.clusters.values()) | {previous.base} if previous is not None else set()
        for target, source in sorted(wanted.items()):
            if source not in before:
                self._copy(source, target)
        names = self.wh.list_names(self._path(CLUSTERS))
        stale = [f"{CLUSTERS}/{n}" for n in names if n.endswith(_PART_SUFFIX) and f"{CLUSTERS}/{n}" not in wanted]
        self.wh.remove([self._path(s) for s in stale])
        self.wh.put_bytes(self._path(STATE_DIR, "published.json"), json.dumps({"generation": gen.number}).encode())

    def _copy(self, source: str, target: str) -> None:
        if source != target:
            self.wh.put_bytes(self._path(target), self.wh.get_bytes(self._path(source)))

    def ensure_published(self, gen: Generation) -> bool:
        """Re-publish ``gen`` whole if the visible tables show another generation (a writer
        was killed while copying). Returns whether it did."""
        if gen.version is None:
            return False  # nothing committed yet: the visible tables are the state
        raw = self.wh.get_if_exists(self._path(STATE_DIR, "published.json"))
        if raw is not None and json.loads(raw).get("generation") == gen.number:
            return False
        log.warning("speaker tables show another generation than %d: publishing it again", gen.number)
        self.publish(gen)
        return True

    def _collect_garbage(self, gen: Generation, keep: int = 2) -> None:
        """Remove generation files that ``gen`` does not use and that are more than ``keep``
        generations old (a reader still holding a recent manifest finds its files)."""
        used = set(gen.tables.values()) | set(gen.clusters.values()) | {gen.base}
        stale = []
        for path in self.wh.files_under(self._path(STATE_DIR)):
            rel = path[len(self._path("")) :].lstrip("/")
            m = _GEN_RE.search(rel)
            if m and int(m.group(1)) < gen.number - keep and rel not in used:
                stale.append(path)
        if stale:
            self.wh.remove(stale)

    # -- one writer at a time --------------------------------------------------------------
    def transact(
        self, build: Callable[[Generation], tuple[Change, T]], *, attempts: int = 3
    ) -> tuple[Generation, T, int]:
        """Under the lease: read the committed generation (published copies repaired first),
        ``build`` a change from it and commit it; when another writer committed first, build
        again from the new generation (``attempts`` in all). Returns the new generation,
        what ``build`` returned beside the change, and the attempts used."""
        for attempt in range(1, attempts + 1):
            with self.writer():
                gen = self.current()
                self.ensure_published(gen)
                change, result = build(gen)
                try:
                    return self.commit(gen, change), result, attempt
                except ConcurrentSpeakerWrite:
                    if attempt == attempts:
                        raise
                    log.warning("another writer committed speaker state first; building again from its generation")
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the writer lease: wait (up to ``lease_wait_s``) while another writer holds a
        live one, take over one whose holder let it expire."""
        path = self._path(STATE_DIR, "lease.json")
        me = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        deadline = time.monotonic() + self.lease_wait_s
        delay = 0.2
        while True:
            body = json.dumps({"owner": me, "expires_at": time.time() + self.lease_ttl_s}).encode()
            held = read_versioned(self.wh, path)
            try:
                if held is None:
                    write_if(self.wh, path, body, expect=None)
                    break
                lease = json.loads(held.data)
                if lease.get("expires_at", 0) < time.time() or _holder_died(lease.get("owner", "")):
                    log.warning(
                        "taking over the speaker state lease of %s (expired or its process died)", lease.get("owner")
                    )
                    write_if(self.wh, path, body, expect=held.version)
                    break
            except PreconditionFailed:
                pass  # someone else got it first
            if time.monotonic() > deadline:
                owner = json.loads(held.data).get("owner") if held is not None else "?"
                raise SpeakerStateBusy(
                    f"the speaker state of {self.wh.root_uri} is being written by {owner}; "
                    f"waited {self.lease_wait_s:.0f} s (it expires by itself if that writer died)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        try:
            yield
        finally:
            held = read_versioned(self.wh, path)
            if held is not None and json.loads(held.data).get("owner") == me:
                self.wh.remove(path)


def _holder_died(owner: str) -> bool:
    """A lease holder on this very host whose process no longer exists (killed)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- speaker_embeddings (per batch, written by diarization) ---------------------------------
def read_embeddings(wh: Warehouse, batch_ids: list[str] | None = None) -> pl.DataFrame:
    """The embeddings of the named batches, or of the whole archive (``None``)."""
    if batch_ids is None:
        df = wh.scan("speaker_embeddings")
        return conform(df, SpeakerEmbeddings) if df is not None else empty_frame(SpeakerEmbeddings)
    frames = [f for b in batch_ids if (f := wh.read_table("speaker_embeddings", b)) is not None]
    return pl.concat([conform(f, SpeakerEmbeddings) for f in frames]) if frames else empty_frame(SpeakerEmbeddings)


# -- the index of one embedding model ---------------------------------------------------------
def load_index(state: SpeakerState, gen: Generation, model: str) -> tuple[VoiceIndex, pl.DataFrame]:
    """The index of ``model`` in ``gen`` plus every centroid row (all models, all statuses).
    Ids are minted from the generation's ``next_number`` (and above any named id)."""
    rows = state.read(gen, CENTROIDS)
    named = [id_number(g) for g in state.read(gen, PROFILES)["global_speaker_id"].to_list()]
    known = [id_number(g) for g in rows["global_speaker_id"].to_list()]
    index = VoiceIndex(model=model, next_number=max([gen.next_number - 1, *named, *known]) + 1)
    merged = rows.filter(pl.col("status") == "merged")
    index.merged = dict(zip(merged["global_speaker_id"].to_list(), merged["merged_into"].to_list()))
    for gid, others in zip(rows["global_speaker_id"].to_list(), rows["distinct_from"].to_list()):
        index.distinct.update(frozenset((gid, o)) for o in others or () if o != gid)
    active = rows.filter((pl.col("model") == model) & (pl.col("status") == "active"))
    if active.height:
        index.ids = active["global_speaker_id"].to_list()
        index.centroids = normalize(active["centroid"].to_numpy())
        index.weights = active["speech_s"].to_numpy().astype(np.float64)
        index.members = active["n_members"].to_numpy().astype(np.int64)
    return index, rows


def centroid_rows(index: VoiceIndex, previous_rows: pl.DataFrame) -> pl.DataFrame:
    """This model's active centroids; other models' rows kept; no id ever forgotten."""
    now = utc_now()
    active = pl.DataFrame(
        {
            "global_speaker_id": index.ids,
            "model": [index.model] * len(index),
            "centroid": pl.Series(
                index.centroids.astype(np.float32).reshape(len(index), EMBEDDING_DIM),
                dtype=pl.Array(pl.Float32, EMBEDDING_DIM),
            ),
            "n_members": index.members.astype(np.int64),
            "speech_s": index.weights.astype(np.float64),
            "status": ["active"] * len(index),
            "merged_into": [None] * len(index),
            "updated_at": [now] * len(index),
            "distinct_from": [index.distinct_from(g) or None for g in index.ids],
        },
        schema_overrides={"merged_into": pl.Utf8, "distinct_from": pl.List(pl.Utf8)},
    )
    active = conform(active, SpeakerCentroids)
    old = previous_rows.filter(~pl.col("global_speaker_id").is_in(index.ids))
    # ids of this model that are no longer active: merged (with their heir) or retired
    mine = old["model"] == index.model
    heir = pl.Series([index.merged.get(g) for g in old["global_speaker_id"].to_list()], dtype=pl.Utf8)
    old = old.with_columns(
        status=pl.when(mine & heir.is_not_null())
        .then(pl.lit("merged"))
        .when(mine & (pl.col("status") == "active"))
        .then(pl.lit("retired"))
        .otherwise(pl.col("status")),
        merged_into=pl.when(mine & heir.is_not_null()).then(heir).otherwise(pl.col("merged_into")),
    )
    return pl.concat([active, old]).sort("global_speaker_id")


# -- what readers and people use -------------------------------------------------------------
def read_clusters(wh: Warehouse, batch_ids: list[str] | None = None) -> pl.DataFrame:
    """``speaker_clusters`` rows of the named batches (or all) in the committed generation."""
    state = SpeakerState(wh)
    return state.read_clusters(state.current(), batch_ids)


def speaker_locations(wh: Warehouse, global_speaker_ids: list[str]) -> pl.DataFrame:
    """Where the named global speakers speak (``global_speaker_id, batch_id, media_id,
    speaker``) in the committed generation: one read of the compact part plus the few delta
    parts, whatever the size of the archive. Merged ids are not followed: pass the ids you
    want (``speaker_centroids.merged_into`` names heirs)."""
    state = SpeakerState(wh)
    return state.locations(state.current(), global_speaker_ids)


def read_archive_table(wh: Warehouse, table: str) -> pl.DataFrame | None:
    """Any table of the contract, per-batch or archive-wide, as one frame (None if absent).
    Archive-wide speaker tables come from the committed generation."""
    if table in ARCHIVE_TABLES:
        state = SpeakerState(wh)
        gen = state.current()
        df = state.read_clusters(gen) if table == CLUSTERS else state.read(gen, table)
        return df if df.height or (table != CLUSTERS and gen.tables.get(table)) else None
    return wh.scan(table)


def active_speakers(wh: Warehouse) -> tuple[pl.DataFrame, int]:
    """Active global speakers with their name and best suggestion, and how many ids are
    merged or retired."""
    state = SpeakerState(wh)
    gen = state.current()
    centroids = state.read(gen, CENTROIDS)
    active = centroids.filter(pl.col("status") == "active").join(
        state.profiles(gen)[0].select("global_speaker_id", "name"), on="global_speaker_id", how="left"
    )
    active = active.join(
        state.read(gen, SUGGESTIONS).select("global_speaker_id", "suggested_name", "similarity", "confidence"),
        on="global_speaker_id",
        how="left",
    )
    # how sure the memberships are (speaker_clusters.confidence): the weakest member and the mean
    members = (
        state.read_clusters(gen)
        .group_by("global_speaker_id")
        .agg(min_confidence=pl.col("confidence").min(), mean_confidence=pl.col("confidence").mean())
    )
    active = active.join(members, on="global_speaker_id", how="left")
    return _closest_voices(active.sort("global_speaker_id")), centroids.height - active.height


def _closest_voices(active: pl.DataFrame) -> pl.DataFrame:
    """``closest_id``, ``closest_similarity``: the most similar other active voice of the
    same model and not split from it (a missed join shows up here; ``speakers split``
    pairs never do). One K x K product per model: fine for a listing."""
    closest = [None] * active.height
    closest_sim = [None] * active.height
    for model in set(active["model"].to_list()):
        rows = [i for i, m in enumerate(active["model"].to_list()) if m == model]
        if len(rows) < 2:
            continue
        C = normalize(active[rows]["centroid"].to_numpy())
        S = C @ C.T
        np.fill_diagonal(S, -np.inf)
        ids = active[rows]["global_speaker_id"].to_list()
        apart = active[rows]["distinct_from"].to_list()
        for a, other in enumerate(apart):
            for b, gid in enumerate(ids):
                if other and gid in other:
                    S[a, b] = -np.inf
        for a, i in enumerate(rows):
            b = int(S[a].argmax())
            if np.isfinite(S[a, b]):
                closest[i], closest_sim[i] = ids[b], round(float(S[a, b]), 4)
    return active.with_columns(
        closest_id=pl.Series(closest, dtype=pl.Utf8), closest_similarity=pl.Series(closest_sim, dtype=pl.Float64)
    )


class UnknownSpeaker(LookupError):
    """No global speaker with that id in the warehouse."""


def name_speaker(wh: Warehouse, global_speaker_id: str, name: str) -> str:
    """Give a voice a name (a new generation); a merged id names the voice that absorbed
    it. Returns the id that was named. The name is checked and normalised first
    (:func:`~.names.validate_name`: raises :class:`~.names.InvalidName`, nothing written)."""
    name = validate_name(name)
    state = SpeakerState(wh)

    def build(gen: Generation) -> tuple[Change, str]:
        centroids = state.read(gen, CENTROIDS)
        if centroids.filter(pl.col("global_speaker_id") == global_speaker_id).is_empty():
            known = centroids.filter(pl.col("status") == "active").height
            raise UnknownSpeaker(
                f"no global speaker {global_speaker_id!r} in {wh.root_uri} "
                f"({known} known; see `opentranscribe speakers list`)"
            )
        merged = dict(zip(*centroids.filter(pl.col("status") == "merged").select("global_speaker_id", "merged_into")))
        target = global_speaker_id
        while target in merged:
            target = merged[target]
        row = conform(
            pl.DataFrame([{"global_speaker_id": target, "name": name, "named_at": utc_now()}]), SpeakerProfiles
        )
        profiles = state.profiles(gen)[0]
        profiles = pl.concat([profiles.filter(pl.col("global_speaker_id") != target), row])
        return Change(profiles=profiles.sort("global_speaker_id")), target

    return state.transact(build)[1]


class SplitRefused(ValueError):
    """A split that would not separate anything (unknown files, all or none of the members)."""


@dataclass(frozen=True)
class SplitResult:
    """What ``split_speaker`` did: the id that stays, and the new id of each part moved out."""

    global_speaker_id: str
    parts: dict[str, list[tuple[str, str]]]  # new id -> its (media_id, speaker) members
    kept: list[tuple[str, str]]  # members that keep ``global_speaker_id``
    generation: int


def _match_media(members: pl.DataFrame, wanted: list[str]) -> set[str]:
    """Media ids of ``members`` named by full id or by a prefix of 8+ hex digits."""
    ids = set(members["media_id"].to_list())
    out = set()
    for w in wanted:
        w = w.strip().lower()
        hits = {m for m in ids if m == w or (len(w) >= 8 and m.startswith(w))}
        if not hits:
            raise SplitRefused(f"{w!r} is not a file of this speaker (its files: {', '.join(sorted(ids)[:10])})")
        out |= hits
    return out


def split_speaker(
    wh: Warehouse,
    global_speaker_id: str,
    *,
    media_ids: list[str] | None = None,
    by_file: bool = False,
    params=None,
) -> SplitResult:
    """Split one global speaker (a new generation, under the lease).

    ``media_ids``: the members in those files move to one new id; everyone else keeps
    ``global_speaker_id`` and its name. ``by_file``: every file's members become their own
    voice; the file with the most speech keeps the id and the name. The ids are recorded as
    distinct (``speaker_centroids.distinct_from``), so no later clustering merges them again;
    ids of every other voice are untouched, and new ids are minted after every id in use."""
    from .cluster import ClusterParams, membership_confidence

    if not by_file and not media_ids:
        raise SplitRefused("name the files to move out (--media) or split by file (--by-file)")
    given = params
    state = SpeakerState(wh)

    def build(gen: Generation) -> tuple[Change, SplitResult]:
        centroids = state.read(gen, CENTROIDS)
        row = centroids.filter(pl.col("global_speaker_id") == global_speaker_id)
        if row.is_empty():
            raise UnknownSpeaker(
                f"no global speaker {global_speaker_id!r} in {wh.root_uri} (see `opentranscribe speakers list`)"
            )
        if row["status"][0] != "active":
            heir = row["merged_into"][0]
            raise SplitRefused(
                f"{global_speaker_id} is {row['status'][0]}" + (f" (merged into {heir}: split {heir})" if heir else "")
            )
        model = row["model"][0]
        params = given or ClusterParams.for_model(model)
        index, previous_rows = load_index(state, gen, model)
        members = state.locations(gen, [global_speaker_id])
        batches = sorted(set(members["batch_id"].to_list()))
        emb = read_embeddings(wh, batches).filter(pl.col("model") == model)
        emb = emb.join(members.select("media_id", "speaker"), on=["media_id", "speaker"], how="semi")
        if emb.height < 2:
            raise SplitRefused(f"{global_speaker_id} has {emb.height} member(s) with an embedding: nothing to split")
        speech = emb.group_by("media_id").agg(pl.col("speech_s").sum()).sort("speech_s", "media_id", descending=True)
        if by_file:
            files = speech["media_id"].to_list()
            if len(files) < 2:
                raise SplitRefused(f"{global_speaker_id} speaks in one file only: split it with --media")
            moved = [{f} for f in files[1:]]
        else:
            chosen = _match_media(members, media_ids or [])
            if chosen >= set(emb["media_id"].to_list()):
                raise SplitRefused("those are all of this speaker's files: nothing would keep the id")
            moved = [chosen]
        group_of = {m: 0 for m in emb["media_id"].to_list()}
        new_ids = []
        for k, files in enumerate(moved, start=1):
            new_ids.append(index.mint())
            for m in files:
                group_of[m] = k
        names = [global_speaker_id, *new_ids]
        labels = np.array([group_of[m] for m in emb["media_id"].to_list()])
        X = normalize(emb["embedding"].to_numpy())
        w = np.clip(emb["speech_s"].to_numpy().astype(np.float64), 0.5, params.max_weight_s)
        pos = index.ids.index(global_speaker_id)
        for k, gid in enumerate(names):
            mask = labels == k
            centroid = normalize((X[mask] * w[mask, None]).sum(axis=0))
            if k == 0:
                index.centroids[pos] = centroid
                index.weights[pos] = float(w[mask].sum())
                index.members[pos] = int(mask.sum())
            else:
                index._append(gid, centroid, float(w[mask].sum()))
                index.members[-1] = int(mask.sum())
        for a in names:
            for b in names:
                if a < b:
                    index.distinct.add(frozenset((a, b)))
        ids = [names[k] for k in labels]
        sims = index.similarities(ids, X)
        conf = membership_confidence(sims, index.runner_up(ids, X), emb["speech_s"].to_numpy(), params)
        moved_rows = pl.DataFrame(
            {
                "media_id": emb["media_id"],
                "speaker": emb["speaker"],
                "new_id": ids,
                "new_similarity": sims,
                "new_confidence": conf,
            }
        )
        parts = {}
        rows = state.read_clusters(gen, batches).join(moved_rows, on=["media_id", "speaker"], how="left")
        now = utc_now()
        rows = rows.with_columns(
            global_speaker_id=pl.coalesce("new_id", "global_speaker_id"),
            similarity=pl.coalesce("new_similarity", "similarity"),
            confidence=pl.when(pl.col("new_id").is_not_null()).then("new_confidence").otherwise("confidence"),
            method=pl.when(pl.col("new_id").is_not_null()).then(pl.lit("split")).otherwise("method"),
            clustered_at=pl.when(pl.col("new_id").is_not_null()).then(pl.lit(now)).otherwise("clustered_at"),
        )
        for (b,), part in rows.partition_by("batch_id", as_dict=True).items():
            parts[b] = conform(part, SpeakerClusters)
        members_of = {
            gid: sorted(zip(*moved_rows.filter(pl.col("new_id") == gid).select("media_id", "speaker"))) for gid in names
        }
        change = Change(
            clusters=parts,
            centroids=centroid_rows(index, previous_rows),
            next_number=index.next_number,
        )
        result = SplitResult(global_speaker_id, {g: members_of[g] for g in new_ids}, members_of[global_speaker_id], 0)
        return change, result

    new, result, _ = state.transact(build)
    return replace(result, generation=new.number)


def merge_speakers(wh: Warehouse, global_speaker_id: str, into: str) -> str:
    """One person under two ids (a missed join, e.g. ``speakers list`` showed them close):
    ``global_speaker_id`` is merged into ``into`` (a new generation, under the lease). Its
    members move with method ``merge`` (kept there by later clusterings), it is recorded as
    ``merged`` into ``into``, and its name moves unless ``into`` has one. Ids a person split
    apart are refused. Returns the id that holds the voice now."""
    from .identity import follow_merges

    state = SpeakerState(wh)

    def build(gen: Generation) -> tuple[Change, str]:
        centroids = state.read(gen, CENTROIDS)
        status = dict(zip(centroids["global_speaker_id"].to_list(), centroids["status"].to_list()))
        for gid in (global_speaker_id, into):
            if gid not in status:
                raise UnknownSpeaker(f"no global speaker {gid!r} in {wh.root_uri} (see `opentranscribe speakers list`)")
        merged = dict(zip(*centroids.filter(pl.col("status") == "merged").select("global_speaker_id", "merged_into")))
        source, target = global_speaker_id, into
        while target in merged:
            target = merged[target]
        if source in merged or status[source] != "active":
            raise SplitRefused(f"{source} is {status[source]}: nothing to merge")
        if source == target:
            raise SplitRefused(f"{source} and {into} are already one voice")
        models = dict(zip(centroids["global_speaker_id"].to_list(), centroids["model"].to_list()))
        if models[source] != models[target]:
            raise SplitRefused(f"{source} and {target} come from different embedding models: never compared")
        index, previous_rows = load_index(state, gen, models[source])
        if frozenset((source, target)) in index.distinct:
            raise SplitRefused(f"{source} was split from {target} by a person: they are kept apart")
        a, b = index.ids.index(source), index.ids.index(target)
        index.centroids[b] = normalize(index.centroids[a] * index.weights[a] + index.centroids[b] * index.weights[b])
        index.weights[b] += index.weights[a]
        index.members[b] += index.members[a]
        for pair in [p for p in index.distinct if source in p]:  # what source was apart from, target is too
            index.distinct.add(frozenset({target, *(pair - {source})}))
            index.distinct.discard(pair)
        keep = [k for k in range(len(index)) if k != a]
        index.ids = [index.ids[k] for k in keep]
        index.centroids, index.weights, index.members = index.centroids[keep], index.weights[keep], index.members[keep]
        index.merged[source] = target
        members = state.locations(gen, [source])
        batches = sorted(set(members["batch_id"].to_list()))
        rows = state.read_clusters(gen, batches)
        emb = read_embeddings(wh, batches).select("media_id", "speaker", "embedding", "speech_s")
        moved = rows.filter(pl.col("global_speaker_id") == source).join(emb, on=["media_id", "speaker"], how="inner")
        if moved.height:
            from .cluster import ClusterParams, membership_confidence

            X = normalize(moved["embedding"].to_numpy())
            ids = [target] * moved.height
            sims = index.similarities(ids, X)
            params = ClusterParams.for_model(models[source])
            conf = membership_confidence(sims, index.runner_up(ids, X), moved["speech_s"].to_numpy(), params)
            update = pl.DataFrame(
                {"media_id": moved["media_id"], "speaker": moved["speaker"], "new_sim": sims, "new_conf": conf}
            )
        else:
            update = pl.DataFrame(
                schema={"media_id": pl.Utf8, "speaker": pl.Utf8, "new_sim": pl.Float64, "new_conf": pl.Float64}
            )
        now = utc_now()
        is_moved = pl.col("global_speaker_id") == source
        rows = (
            rows.join(update, on=["media_id", "speaker"], how="left")
            .with_columns(
                similarity=pl.when(is_moved).then(pl.coalesce("new_sim", "similarity")).otherwise("similarity"),
                confidence=pl.when(is_moved).then(pl.coalesce("new_conf", "confidence")).otherwise("confidence"),
                method=pl.when(is_moved).then(pl.lit("merge")).otherwise("method"),
                clustered_at=pl.when(is_moved).then(pl.lit(now)).otherwise("clustered_at"),
            )
            .with_columns(global_speaker_id=pl.when(is_moved).then(pl.lit(target)).otherwise("global_speaker_id"))
        )
        parts = {b: conform(p, SpeakerClusters) for (b,), p in rows.partition_by("batch_id", as_dict=True).items()}
        profiles, _ = follow_merges(state.profiles(gen)[0], [(source, target)])
        change = Change(clusters=parts, centroids=centroid_rows(index, previous_rows), profiles=profiles)
        return change, target

    return state.transact(build)[1]

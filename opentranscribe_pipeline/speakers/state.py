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

Here: :class:`SpeakerState` (read, commit, publish, one writer at a time) and the readers the
other packages use. The manifest's form is in :mod:`.manifest`, the lease in :mod:`.lease`,
the index of one model from and to centroid rows in :mod:`.index_rows`, and a person's edits
(name, split, merge) in :mod:`.edits`.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import polars as pl

from ..schemas import SpeakerClusters, SpeakerProfiles, conform, empty_frame
from ..storage import Warehouse
from ..storage.conditional import PreconditionFailed, read_versioned, write_if
from .lease import hold_lease
from .manifest import (
    ARCHIVE_TABLES,
    CENTROIDS,
    CLUSTERS,
    MODELS,
    PART_PREFIX,
    PART_SUFFIX,
    PROFILES,
    SMALL_TABLES,
    STATE_DIR,
    SUGGESTIONS,
    Change,
    Generation,
    visible_cluster_path,
    visible_table_path,
)
from .names import RefusedName, check_profiles
from .voices import id_number, normalize

log = logging.getLogger(__name__)

_COMPACT_PREFIX = "compact-"  # speaker_clusters/compact-<generation>.parquet: every batch not in a delta part
COMPACT_AFTER = 32  # delta parts that may pile up before the next commit compacts them
_GEN_RE = re.compile(r"gen-(\d+)/")
T = TypeVar("T")


class ConcurrentSpeakerWrite(RuntimeError):
    """Another writer committed a generation while this one worked; nothing of this one is
    visible. Running it again starts from the new generation."""


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
        batches = [n[len(PART_PREFIX) : -len(PART_SUFFIX)] for n in names if n.startswith(PART_PREFIX)]
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
                deltas[batch_id] = f"{gen_dir}/{CLUSTERS}/{PART_PREFIX}{batch_id}{PART_SUFFIX}"
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
        path = f"{gen_dir}/{CLUSTERS}/{_COMPACT_PREFIX}{gen_dir.rsplit('-', 1)[-1]}{PART_SUFFIX}"
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
        stale = [f"{CLUSTERS}/{n}" for n in names if n.endswith(PART_SUFFIX) and f"{CLUSTERS}/{n}" not in wanted]
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

    def writer(self) -> AbstractContextManager[None]:
        """Hold the writer lease (:func:`.lease.hold_lease`): wait (up to ``lease_wait_s``)
        while another writer holds a live one, take over one whose holder let it expire."""
        return hold_lease(
            self.wh, self._path(STATE_DIR, "lease.json"), ttl_s=self.lease_ttl_s, wait_s=self.lease_wait_s
        )


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

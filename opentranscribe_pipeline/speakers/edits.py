"""A person's edits of the speaker state: name a voice, split one, merge two (Dagster-free).

Each edit is one new generation of the speaker state, built under the writer lease by
:meth:`.state.SpeakerState.transact` (so it retries from a newer generation if another writer
committed first). The voices change through :class:`~.voices.VoiceIndex` operations
(:meth:`~.voices.VoiceIndex.split`, :meth:`~.voices.VoiceIndex.merge`); merge chains are
followed by :func:`~.voices.resolve_merged`. An edit that would not make sense raises a
subclass of :class:`EditRefused` (:class:`SplitRefused`, :class:`MergeRefused`) before
anything is written; an unknown id raises :class:`UnknownSpeaker`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from ..schemas import SpeakerClusters, SpeakerProfiles, conform, utc_now
from ..storage import Warehouse
from .identity import follow_merges
from .index_rows import centroid_rows, load_index, merged_into, read_embeddings
from .manifest import CENTROIDS, Change, Generation
from .names import validate_name
from .params import ClusterParams, membership_confidence
from .state import SpeakerState
from .voices import normalize, resolve_merged


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
        target = resolve_merged(merged_into(centroids), global_speaker_id)
        row = conform(
            pl.DataFrame([{"global_speaker_id": target, "name": name, "named_at": utc_now()}]), SpeakerProfiles
        )
        profiles = state.profiles(gen)[0]
        profiles = pl.concat([profiles.filter(pl.col("global_speaker_id") != target), row])
        return Change(profiles=profiles.sort("global_speaker_id")), target

    return state.transact(build)[1]


class EditRefused(ValueError):
    """An edit that would not make sense; nothing was written. The CLI prints the message
    and exits with its usage status."""


class SplitRefused(EditRefused):
    """A split that would not separate anything (unknown files, all or none of the members)."""


class MergeRefused(EditRefused):
    """A merge that cannot be made: a voice that is not active, one voice already, two
    embedding models, or two ids a person split apart."""


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
        for k, files in enumerate(moved, start=1):
            for m in files:
                group_of[m] = k
        labels = np.array([group_of[m] for m in emb["media_id"].to_list()])
        X = normalize(emb["embedding"].to_numpy())
        w = np.clip(emb["speech_s"].to_numpy().astype(np.float64), 0.5, params.max_weight_s)
        names = index.split(global_speaker_id, X, w, labels, n_parts=len(moved) + 1)
        new_ids = names[1:]
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
    apart are refused (:class:`MergeRefused`). Returns the id that holds the voice now."""
    state = SpeakerState(wh)

    def build(gen: Generation) -> tuple[Change, str]:
        centroids = state.read(gen, CENTROIDS)
        status = dict(zip(centroids["global_speaker_id"].to_list(), centroids["status"].to_list()))
        for gid in (global_speaker_id, into):
            if gid not in status:
                raise UnknownSpeaker(f"no global speaker {gid!r} in {wh.root_uri} (see `opentranscribe speakers list`)")
        merged = merged_into(centroids)
        source, target = global_speaker_id, resolve_merged(merged, into)
        if source in merged or status[source] != "active":
            raise MergeRefused(f"{source} is {status[source]}: nothing to merge")
        if source == target:
            raise MergeRefused(f"{source} and {into} are already one voice")
        models = dict(zip(centroids["global_speaker_id"].to_list(), centroids["model"].to_list()))
        if models[source] != models[target]:
            raise MergeRefused(f"{source} and {target} come from different embedding models: never compared")
        index, previous_rows = load_index(state, gen, models[source])
        if index.kept_apart(source, target):
            raise MergeRefused(f"{source} was split from {target} by a person: they are kept apart")
        index.merge(source, target)
        members = state.locations(gen, [source])
        batches = sorted(set(members["batch_id"].to_list()))
        rows = state.read_clusters(gen, batches)
        emb = read_embeddings(wh, batches).select("media_id", "speaker", "embedding", "speech_s")
        moved = rows.filter(pl.col("global_speaker_id") == source).join(emb, on=["media_id", "speaker"], how="inner")
        if moved.height:
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

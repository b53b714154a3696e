"""Archive-wide speaker identity as plain functions over frames (no I/O, no Dagster).

- :func:`recluster_all`: every local speaker of one embedding model re-clustered, ids kept
  stable (the nightly schedule);
- :func:`assign_batches`: the speakers of some batches given ids against the centroids
  only, ``O(batch x voices)`` (after every batch);
- :func:`follow_merges`, :func:`suggest`, :func:`unknown_profile_ids`: what names do when
  voices merge, which unnamed voices resemble a named one, which names point nowhere.

The clustering maths is in :mod:`.cluster`; the tables these read and write, in :mod:`.state`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..schemas import EMBEDDING_DIM, SpeakerClusters, SpeakerProfiles, SpeakerSuggestions, conform, empty_frame, utc_now
from .cluster import ReclusterReport, assign_new, recluster
from .params import ClusterParams, membership_confidence
from .voices import VoiceIndex


@dataclass(frozen=True)
class Assignment:
    """The ``speaker_clusters`` rows of one clustering run and the index after it."""

    rows: pl.DataFrame  # SpeakerClusters
    index: VoiceIndex
    report: ReclusterReport | None = None  # full re-clustering only: kept/new ids, merges, splits
    newly_assigned: int = 0  # incremental only: local speakers that had no id before


def cluster_rows(
    emb: pl.DataFrame,
    ids: list[str],
    sims: np.ndarray,
    method: str,
    index: VoiceIndex | None = None,
    params: ClusterParams | None = None,
) -> pl.DataFrame:
    """``speaker_clusters`` rows; with ``index`` and ``params``, each membership's confidence
    (:func:`~.params.membership_confidence`) against the final centroids of ``index``."""
    confidence = None
    if index is not None and params is not None and emb.height:
        vectors = _vectors(emb)
        runner_up = index.runner_up(ids, vectors)
        confidence = membership_confidence(np.asarray(sims), runner_up, emb["speech_s"].to_numpy(), params)
    df = emb.select("batch_id", "media_id", "speaker", "model").with_columns(
        global_speaker_id=pl.Series(ids, dtype=pl.Utf8),
        similarity=pl.Series(np.clip(sims, -1, 1), dtype=pl.Float64),
        method=pl.lit(method),
        clustered_at=pl.lit(utc_now()),
        confidence=pl.Series(confidence, dtype=pl.Float64) if confidence is not None else pl.lit(None),
    )
    return conform(df, SpeakerClusters)


def _vectors(emb: pl.DataFrame) -> np.ndarray:
    return emb["embedding"].to_numpy() if emb.height else np.zeros((0, EMBEDDING_DIM), np.float32)


PLACED_BY_HAND = ("merge", "split")  # speaker_clusters.method of rows a person placed


def recluster_all(emb: pl.DataFrame, previous: pl.DataFrame, index: VoiceIndex, params: ClusterParams) -> Assignment:
    """Re-cluster ``emb`` (speaker_embeddings rows of ``index.model``), each speaker
    inheriting the id it had in ``previous`` (speaker_clusters rows) where the voices agree.
    Rows a person placed (``speakers merge`` / ``speakers split``: method ``merge`` or
    ``split``) keep their id (following merges) and their method: the clustering does not
    undo a person's decision."""
    placed = previous.filter(pl.col("method").is_in(PLACED_BY_HAND)).select(
        "media_id", "speaker", pl.col("global_speaker_id").alias("placed_id"), pl.col("method").alias("placed_by")
    )
    keyed = emb.join(placed, on=["media_id", "speaker"], how="left")
    free = keyed.filter(pl.col("placed_id").is_null()).drop("placed_id", "placed_by")
    pinned = keyed.filter(pl.col("placed_id").is_not_null())
    prev_map = dict(
        zip(zip(previous["media_id"].to_list(), previous["speaker"].to_list()), previous["global_speaker_id"].to_list())
    )
    previous_ids = [prev_map.get(k) for k in zip(free["media_id"].to_list(), free["speaker"].to_list())]
    ids, sims, new_index, report = recluster(
        _vectors(free), free["speech_s"].to_numpy(), previous_ids, index, params, groups=free["media_id"].to_list()
    )
    rows = [cluster_rows(free, ids, sims, "full", new_index, params)] if free.height else []
    if pinned.height:
        pin_ids = [new_index.resolve(index.resolve(g)) for g in pinned["placed_id"].to_list()]
        X = _vectors(pinned)
        w = np.clip(pinned["speech_s"].to_numpy().astype(np.float64), 0.5, params.max_weight_s)
        pos = {g: k for k, g in enumerate(new_index.ids)}
        for gid in dict.fromkeys(pin_ids):
            mine = np.array([g == gid for g in pin_ids])
            vec = (X[mine] * w[mine, None]).sum(axis=0)
            if gid in pos:
                k = pos[gid]
                total = new_index.weights[k] + w[mine].sum()
                new_index.centroids[k] = new_index.centroids[k] * new_index.weights[k] + vec
                new_index.centroids[k] /= max(float(np.linalg.norm(new_index.centroids[k])), 1e-12)
                new_index.weights[k] = total
                new_index.members[k] += int(mine.sum())
            else:
                pos[gid] = new_index.add(gid, vec, float(w[mine].sum()), members=int(mine.sum()))
        sims_p = new_index.similarities(pin_ids, X)
        for method in PLACED_BY_HAND:
            sel = (pinned["placed_by"] == method).to_numpy()
            if sel.any():
                part = pinned.filter(pl.Series(sel))
                part_ids = [g for g, keep in zip(pin_ids, sel) if keep]
                rows.append(cluster_rows(part, part_ids, sims_p[sel], method, new_index, params))
        if free.height:  # free members' similarities against the centroids the pinned ones moved
            rows[0] = rows[0].with_columns(
                similarity=pl.Series(np.clip(new_index.similarities(ids, _vectors(free)), -1, 1), dtype=pl.Float64)
            )
    out = pl.concat(rows) if rows else cluster_rows(free, ids, sims, "full", new_index, params)
    return Assignment(out, new_index, report=report)


def assign_batches(emb: pl.DataFrame, known: pl.DataFrame, index: VoiceIndex, params: ClusterParams) -> Assignment:
    """Ids for the speakers in ``emb``: those already in ``known`` (speaker_clusters rows)
    keep theirs (following merges); the others join the most similar voice or mint an id.
    Updates ``index`` in place."""
    known = known.filter(pl.col("model") == index.model)
    placed = known.filter(pl.col("method").is_in(PLACED_BY_HAND)).select("media_id", "speaker", "method")
    known = known.select("media_id", "speaker", "global_speaker_id")
    known = known.with_columns(global_speaker_id=pl.col("global_speaker_id").map_elements(index.resolve, pl.Utf8))
    joined = emb.join(known, on=["media_id", "speaker"], how="left")
    todo = joined.filter(pl.col("global_speaker_id").is_null())
    new_ids, new_sims = assign_new(
        index, _vectors(todo), todo["speech_s"].to_numpy(), params, groups=todo["media_id"].to_list()
    )
    kept = joined.filter(pl.col("global_speaker_id").is_not_null())
    kept_ids = kept["global_speaker_id"].to_list()
    kept_sims = index.similarities(kept_ids, kept["embedding"].to_list())
    rows = pl.concat(
        [
            cluster_rows(kept, kept_ids, kept_sims, "incremental", index, params),
            cluster_rows(todo, new_ids, new_sims, "incremental", index, params),
        ]
    )
    if placed.height:  # rows a person placed stay marked so (a full re-clustering keeps them)
        rows = (
            rows.join(placed.rename({"method": "placed_by"}), on=["media_id", "speaker"], how="left")
            .with_columns(method=pl.coalesce("placed_by", "method"))
            .drop("placed_by")
        )
    return Assignment(rows, index, newly_assigned=len(new_ids))


def follow_merges(profiles: pl.DataFrame, merges: list[tuple[str, str]]) -> tuple[pl.DataFrame, list[str]]:
    """Names move from a merged id to its heir unless the heir has a name (a conflict)."""
    names = dict(zip(profiles["global_speaker_id"].to_list(), profiles["name"].to_list()))
    conflicts, moved = [], []
    for old, new in merges:
        if old not in names:
            continue
        if new in names:
            if names[new] != names[old]:
                conflicts.append(f"{old} ({names[old]}) merged into {new} ({names[new]}): kept {names[new]!r}")
            continue
        names[new] = names[old]
        moved.append({"global_speaker_id": new, "name": names[old], "named_at": utc_now()})
    if moved:
        profiles = pl.concat([profiles, conform(pl.DataFrame(moved), SpeakerProfiles)])
    return profiles, conflicts


def suggest(index: VoiceIndex, profiles: pl.DataFrame, accept: float, suggest_at: float) -> pl.DataFrame:
    """For every unnamed voice, the most similar named voice if similar enough."""
    pos = {g: k for k, g in enumerate(index.ids)}
    named = {}
    for gid, name in zip(profiles["global_speaker_id"].to_list(), profiles["name"].to_list()):
        gid = index.resolve(gid)
        if gid in pos:
            named[gid] = name
    if not named or len(index) == 0:
        return empty_frame(SpeakerSuggestions)
    named_ids = list(named)
    N = index.centroids[[pos[g] for g in named_ids]]  # (named, dim)
    unnamed = [k for k, g in enumerate(index.ids) if g not in named]
    rows = []
    for lo in range(0, len(unnamed), 4096):
        ks = unnamed[lo : lo + 4096]
        s = index.centroids[ks] @ N.T
        best = s.argmax(axis=1)
        for k, b, v in zip(ks, best, s[np.arange(len(ks)), best]):
            if v >= suggest_at:
                rows.append(
                    {
                        "global_speaker_id": index.ids[k],
                        "suggested_name": named[named_ids[b]],
                        "named_global_speaker_id": named_ids[b],
                        "similarity": round(float(v), 4),
                        "confidence": "high" if v >= accept else "medium",
                    }
                )
    if not rows:
        return empty_frame(SpeakerSuggestions)
    return conform(pl.DataFrame(rows), SpeakerSuggestions).sort("similarity", descending=True)


def unknown_profile_ids(profiles: pl.DataFrame, centroids: pl.DataFrame) -> list[str]:
    known = set(centroids["global_speaker_id"].to_list())
    return sorted(set(profiles["global_speaker_id"].to_list()) - known)

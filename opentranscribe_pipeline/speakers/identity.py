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
from .cluster import ClusterParams, ReclusterReport, VoiceIndex, assign_new, membership_confidence, recluster


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
    (:func:`~.cluster.membership_confidence`) against the final centroids of ``index``."""
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


def recluster_all(emb: pl.DataFrame, previous: pl.DataFrame, index: VoiceIndex, params: ClusterParams) -> Assignment:
    """Re-cluster ``emb`` (speaker_embeddings rows of ``index.model``), each speaker
    inheriting the id it had in ``previous`` (speaker_clusters rows) where the voices agree."""
    prev_map = dict(
        zip(zip(previous["media_id"].to_list(), previous["speaker"].to_list()), previous["global_speaker_id"].to_list())
    )
    previous_ids = [prev_map.get(k) for k in zip(emb["media_id"].to_list(), emb["speaker"].to_list())]
    ids, sims, new_index, report = recluster(_vectors(emb), emb["speech_s"].to_numpy(), previous_ids, index, params)
    return Assignment(cluster_rows(emb, ids, sims, "full", new_index, params), new_index, report=report)


def assign_batches(emb: pl.DataFrame, known: pl.DataFrame, index: VoiceIndex, params: ClusterParams) -> Assignment:
    """Ids for the speakers in ``emb``: those already in ``known`` (speaker_clusters rows)
    keep theirs (following merges); the others join the most similar voice or mint an id.
    Updates ``index`` in place."""
    known = known.filter(pl.col("model") == index.model).select("media_id", "speaker", "global_speaker_id")
    known = known.with_columns(global_speaker_id=pl.col("global_speaker_id").map_elements(index.resolve, pl.Utf8))
    joined = emb.join(known, on=["media_id", "speaker"], how="left")
    todo = joined.filter(pl.col("global_speaker_id").is_null())
    new_ids, new_sims = assign_new(index, _vectors(todo), todo["speech_s"].to_numpy(), params)
    kept = joined.filter(pl.col("global_speaker_id").is_not_null())
    kept_ids = kept["global_speaker_id"].to_list()
    kept_sims = index.similarities(kept_ids, kept["embedding"].to_list())
    rows = pl.concat(
        [
            cluster_rows(kept, kept_ids, kept_sims, "incremental", index, params),
            cluster_rows(todo, new_ids, new_sims, "incremental", index, params),
        ]
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

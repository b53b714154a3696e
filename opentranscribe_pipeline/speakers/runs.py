"""One clustering run over the warehouse: read, cluster, commit a generation (Dagster-free).

The clustering asset and the tests call :func:`cluster_archive`; it holds the writer lease
for the whole read-compute-commit, so the generation it builds on is the one it replaces,
and retries from the new generation if another writer (another machine) committed first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from .identity import Assignment, assign_batches, follow_merges, recluster_all, suggest, unknown_profile_ids
from .index_rows import centroid_rows, load_index, read_embeddings
from .manifest import Change, Generation
from .names import RefusedName
from .params import ClusterParams
from .state import SpeakerState


@dataclass(frozen=True)
class ClusteringRun:
    """What one run did, for the asset's metadata and the tests."""

    outcome: Assignment
    generation: Generation
    embeddings: pl.DataFrame  # the clustered embeddings (of ``model``)
    other_models: pl.DataFrame  # embeddings of other models: never compared, not clustered
    centroids: pl.DataFrame
    profiles: pl.DataFrame
    suggestions: pl.DataFrame
    name_conflicts: list[str]
    unknown_profile_ids: list[str]
    attempts: int
    refused_names: list[RefusedName] = field(default_factory=list)  # profile rows the name rule refused


def cluster_archive(
    wh,
    *,
    mode: Literal["full", "incremental"],
    model: str,
    params: ClusterParams,
    accept_threshold: float,
    suggest_threshold: float,
    batch_ids: list[str] | None = None,
    state: SpeakerState | None = None,
    attempts: int = 3,
) -> ClusteringRun:
    """Re-cluster every speaker of ``model`` (``full``) or assign the speakers of
    ``batch_ids`` (``incremental``), and commit the result as one generation."""
    full = mode == "full"
    if not full and not batch_ids:
        raise ValueError("incremental clustering needs batch_ids")
    state = state or SpeakerState(wh)
    emb_all = read_embeddings(wh, None if full else batch_ids)
    emb = emb_all.filter(pl.col("model") == model)
    other = emb_all.filter(pl.col("model") != model)

    def build(gen: Generation) -> tuple[Change, dict]:
        index, previous_centroids = load_index(state, gen, model)
        if full:
            outcome = recluster_all(emb, state.read_clusters(gen), index, params)
            parts = {b: rows for (b,), rows in outcome.rows.partition_by("batch_id", as_dict=True).items()}
        else:
            outcome = assign_batches(emb, state.read_clusters(gen, batch_ids), index, params)
            by_batch = outcome.rows.partition_by("batch_id", as_dict=True)
            parts = {b: by_batch.get((b,)) for b in batch_ids}
        centroids = centroid_rows(outcome.index, previous_centroids)
        checked, conflicts = state.profiles_checked(gen), []
        profiles, edited = checked.names, checked.edited
        merged = outcome.report is not None and bool(outcome.report.merges)
        if merged:
            profiles, conflicts = follow_merges(profiles, outcome.report.merges)
        suggestions = suggest(outcome.index, profiles, accept_threshold, suggest_threshold)
        change = Change(
            clusters=parts,
            replace_all_clusters=full,
            centroids=centroids,
            # refused names (speakers/names.py) are written out of the state and its published file
            profiles=profiles if merged or edited or checked.refused else None,
            suggestions=suggestions,
            next_number=outcome.index.next_number,
        )
        made = {"outcome": outcome, "centroids": centroids, "profiles": profiles, "suggestions": suggestions}
        return change, made | {"name_conflicts": conflicts, "refused_names": checked.refused}

    new, made, attempt = state.transact(build, attempts=attempts)
    return ClusteringRun(
        generation=new,
        embeddings=emb,
        other_models=other,
        unknown_profile_ids=unknown_profile_ids(made["profiles"], made["centroids"]),
        attempts=attempt,
        **made,
    )

"""Archive-wide speaker tables on the warehouse: clusters, centroids, profiles, suggestions.

``speaker_clusters`` is one table in one directory, written as one Parquet file per batch
(``<root>/speaker_clusters/part-<batch_id>.parquet``): assigning a new batch writes one
small file instead of rewriting the archive, and analysts read the directory as one table
(``read_parquet('<root>/speaker_clusters/*.parquet')``). The other three tables are small
(one row per voice or per name) and are single files, ``<table>/part-0.parquet``.

Every read and write goes through the :class:`~opentranscribe_pipeline.storage.Warehouse`
(its retries, its atomic writes, its one Parquet serialiser). The CLI and the clustering
asset both use these functions; neither touches the files directly.
"""

from __future__ import annotations

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
from .cluster import VoiceIndex, id_number, normalize

CLUSTERS = "speaker_clusters"
CENTROIDS = "speaker_centroids"
PROFILES = "speaker_profiles"
SUGGESTIONS = "speaker_suggestions"
ARCHIVE_TABLES = (CLUSTERS, CENTROIDS, PROFILES, SUGGESTIONS)
_PART_PREFIX, _PART_SUFFIX = "part-", ".parquet"


# -- speaker_embeddings (per batch, written by diarization) ---------------------------------
def read_embeddings(wh: Warehouse, batch_ids: list[str] | None = None) -> pl.DataFrame:
    """The embeddings of the named batches, or of the whole archive (``None``)."""
    if batch_ids is None:
        df = wh.scan("speaker_embeddings")
        return conform(df, SpeakerEmbeddings) if df is not None else empty_frame(SpeakerEmbeddings)
    frames = [f for b in batch_ids if (f := wh.read_table("speaker_embeddings", b)) is not None]
    return pl.concat([conform(f, SpeakerEmbeddings) for f in frames]) if frames else empty_frame(SpeakerEmbeddings)


# -- speaker_clusters: one file per batch ----------------------------------------------------
def cluster_part(wh: Warehouse, batch_id: str) -> str:
    return wh.path(CLUSTERS, f"{_PART_PREFIX}{batch_id}{_PART_SUFFIX}")


def cluster_batches(wh: Warehouse) -> list[str]:
    """Batches that have a ``speaker_clusters`` part."""
    names = wh.list_names(wh.path(CLUSTERS))
    return sorted(
        n[len(_PART_PREFIX) : -len(_PART_SUFFIX)]
        for n in names
        if n.startswith(_PART_PREFIX) and n.endswith(_PART_SUFFIX)
    )


def read_clusters(wh: Warehouse, batch_ids: list[str] | None = None) -> pl.DataFrame:
    """``speaker_clusters`` rows of the named batches, or of the whole archive (``None``)."""
    wanted = cluster_batches(wh) if batch_ids is None else batch_ids
    frames = [df for b in wanted if (df := wh.read_parquet(cluster_part(wh, b))) is not None]
    return pl.concat([conform(f, SpeakerClusters) for f in frames]) if frames else empty_frame(SpeakerClusters)


def write_clusters(wh: Warehouse, rows: pl.DataFrame, batch_ids: list[str]) -> None:
    """Replace the parts of ``batch_ids`` with ``rows`` (a batch without rows loses its part)."""
    by_batch = rows.partition_by("batch_id", as_dict=True)
    for batch_id in batch_ids:
        part = by_batch.get((batch_id,))
        if part is None:
            wh.remove(cluster_part(wh, batch_id))
        else:
            wh.write_parquet(cluster_part(wh, batch_id), part.sort("media_id", "speaker"))


def replace_all_clusters(wh: Warehouse, rows: pl.DataFrame) -> list[str]:
    """The whole table becomes ``rows``: parts of batches not in ``rows`` (speakers gone,
    or of another model) are removed. Returns the batches written."""
    written = sorted(set(rows["batch_id"].to_list()))
    write_clusters(wh, rows, written)
    for batch_id in set(cluster_batches(wh)) - set(written):
        wh.remove(cluster_part(wh, batch_id))
    return written


# -- the small archive-wide tables -----------------------------------------------------------
def read_small(wh: Warehouse, table: str, model) -> pl.DataFrame:
    df = wh.read_table(table)
    return conform(df, model) if df is not None else empty_frame(model)


def read_centroids(wh: Warehouse) -> pl.DataFrame:
    return read_small(wh, CENTROIDS, SpeakerCentroids)


def read_profiles(wh: Warehouse) -> pl.DataFrame:
    return read_small(wh, PROFILES, SpeakerProfiles)


def write_profiles(wh: Warehouse, profiles: pl.DataFrame) -> None:
    SpeakerProfiles.validate(profiles)
    wh.write_table(PROFILES, profiles)


def read_suggestions(wh: Warehouse) -> pl.DataFrame:
    return read_small(wh, SUGGESTIONS, SpeakerSuggestions)


def write_suggestions(wh: Warehouse, suggestions: pl.DataFrame) -> None:
    wh.write_table(SUGGESTIONS, suggestions)


def read_archive_table(wh: Warehouse, table: str) -> pl.DataFrame | None:
    """Any table of the contract, per-batch or archive-wide, as one frame (None if absent)."""
    if table == CLUSTERS:
        df = read_clusters(wh)
        return df if df.height else None
    if table in ARCHIVE_TABLES:
        return wh.read_table(table)
    return wh.scan(table)


# -- speaker_centroids: the clustering state -------------------------------------------------
def load_index(wh: Warehouse, model: str) -> tuple[VoiceIndex, pl.DataFrame]:
    """The index of ``model`` plus every centroid row (all models, all statuses)."""
    rows = read_centroids(wh)
    profiles = read_profiles(wh)
    numbers = [id_number(g) for g in rows["global_speaker_id"].to_list() + profiles["global_speaker_id"].to_list()]
    index = VoiceIndex(model=model, next_number=max(numbers, default=0) + 1)
    merged = rows.filter(pl.col("status") == "merged")
    index.merged = dict(zip(merged["global_speaker_id"].to_list(), merged["merged_into"].to_list()))
    active = rows.filter((pl.col("model") == model) & (pl.col("status") == "active"))
    if active.height:
        index.ids = active["global_speaker_id"].to_list()
        index.centroids = normalize(active["centroid"].to_numpy())
        index.weights = active["speech_s"].to_numpy().astype(np.float64)
        index.members = active["n_members"].to_numpy().astype(np.int64)
    return index, rows


def save_index(wh: Warehouse, index: VoiceIndex, previous_rows: pl.DataFrame) -> pl.DataFrame:
    """Write this model's active centroids; keep other models' rows; never forget an id."""
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
        },
        schema_overrides={"merged_into": pl.Utf8},
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
    out = pl.concat([active, old]).sort("global_speaker_id")
    SpeakerCentroids.validate(out)
    wh.write_table(CENTROIDS, out)
    return out


# -- what people do: list and name voices ----------------------------------------------------
def active_speakers(wh: Warehouse) -> tuple[pl.DataFrame, int]:
    """Active global speakers with their name and best suggestion, and how many ids are
    merged or retired."""
    centroids = read_centroids(wh)
    active = centroids.filter(pl.col("status") == "active").join(
        read_profiles(wh).select("global_speaker_id", "name"), on="global_speaker_id", how="left"
    )
    active = active.join(
        read_suggestions(wh).select("global_speaker_id", "suggested_name", "similarity", "confidence"),
        on="global_speaker_id",
        how="left",
    )
    return active.sort("global_speaker_id"), centroids.height - active.height


class UnknownSpeaker(LookupError):
    """No global speaker with that id in the warehouse."""


def name_speaker(wh: Warehouse, global_speaker_id: str, name: str) -> str:
    """Give a voice a name; a merged id names the voice that absorbed it. Returns the id
    that was named."""
    centroids = read_centroids(wh)
    if centroids.filter(pl.col("global_speaker_id") == global_speaker_id).is_empty():
        known = centroids.filter(pl.col("status") == "active").height
        raise UnknownSpeaker(
            f"no global speaker {global_speaker_id!r} in {wh.root_uri} ({known} known; see `opentranscribe speakers list`)"
        )
    merged = dict(zip(*centroids.filter(pl.col("status") == "merged").select("global_speaker_id", "merged_into")))
    target = global_speaker_id
    while target in merged:
        target = merged[target]
    row = conform(pl.DataFrame([{"global_speaker_id": target, "name": name, "named_at": utc_now()}]), SpeakerProfiles)
    profiles = read_profiles(wh)
    profiles = pl.concat([profiles.filter(pl.col("global_speaker_id") != target), row]).sort("global_speaker_id")
    write_profiles(wh, profiles)
    return target

"""A :class:`~.voices.VoiceIndex` from and to the ``speaker_centroids`` rows of a generation,
and the ``speaker_embeddings`` it is computed from (Dagster-free).

The clustering run (:mod:`.runs`) and a person's edits (:mod:`.edits`) both load the index of
one embedding model from the committed generation, change it, and write every centroid row
back (other models' rows and retired ids kept: no id is ever forgotten).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..schemas import EMBEDDING_DIM, SpeakerCentroids, SpeakerEmbeddings, conform, empty_frame, utc_now
from ..storage import Warehouse
from .manifest import CENTROIDS, PROFILES, Generation
from .state import SpeakerState
from .voices import VoiceIndex, id_number, normalize


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
    index.merged = merged_into(rows)
    for gid, others in zip(rows["global_speaker_id"].to_list(), rows["distinct_from"].to_list()):
        index.distinct.update(frozenset((gid, o)) for o in others or () if o != gid)
    active = rows.filter((pl.col("model") == model) & (pl.col("status") == "active"))
    if active.height:
        index.ids = active["global_speaker_id"].to_list()
        index.centroids = normalize(active["centroid"].to_numpy())
        index.weights = active["speech_s"].to_numpy().astype(np.float64)
        index.members = active["n_members"].to_numpy().astype(np.int64)
    return index, rows


def merged_into(centroids: pl.DataFrame) -> dict[str, str]:
    """Retired id -> the id that absorbed it, from ``speaker_centroids`` rows (follow a chain
    with :func:`~.voices.resolve_merged`)."""
    merged = centroids.filter(pl.col("status") == "merged")
    return dict(zip(merged["global_speaker_id"].to_list(), merged["merged_into"].to_list()))


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

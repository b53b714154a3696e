"""Archive-wide speaker tables on the warehouse: clusters, centroids, profiles, suggestions.

``speaker_clusters`` is one table in one directory, written as one Parquet file per batch
(``<root>/speaker_clusters/part-<batch_id>.parquet``): assigning a new batch writes one
small file instead of rewriting the archive, and analysts read the directory as one table
(``read_parquet('<root>/speaker_clusters/*.parquet')``). The other three tables are small
(one row per voice or per name) and are single files, ``<table>/part-0.parquet``.
"""

from __future__ import annotations

import datetime as dt
import io
import posixpath

import numpy as np
import polars as pl

from ..schemas import (
    EMBEDDING_DIM,
    SpeakerCentroids,
    SpeakerClusters,
    SpeakerProfiles,
    SpeakerSuggestions,
    conform,
    empty_frame,
)
from ..speech.cluster import VoiceIndex, id_number, normalize
from ..storage import Warehouse

CLUSTERS = "speaker_clusters"
CENTROIDS = "speaker_centroids"
PROFILES = "speaker_profiles"
SUGGESTIONS = "speaker_suggestions"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- speaker_clusters: one file per batch ----------------------------------------------------
def cluster_part(wh: Warehouse, batch_id: str) -> str:
    return wh.path(CLUSTERS, f"part-{batch_id}.parquet")


def cluster_batches(wh: Warehouse) -> list[str]:
    d = wh.path(CLUSTERS)
    try:
        names = [posixpath.basename(p) for p in wh.fs.ls(d, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(n[len("part-") : -len(".parquet")] for n in names if n.startswith("part-") and n.endswith(".parquet"))


def write_cluster_part(wh: Warehouse, batch_id: str, df: pl.DataFrame) -> None:
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=True)
    wh.put_bytes(cluster_part(wh, batch_id), buf.getvalue())


def read_clusters(wh: Warehouse, batch_ids: list[str] | None = None) -> pl.DataFrame:
    wanted = cluster_batches(wh) if batch_ids is None else [b for b in batch_ids if b in set(cluster_batches(wh))]
    frames = [conform(pl.read_parquet(io.BytesIO(wh.get_bytes(cluster_part(wh, b)))), SpeakerClusters) for b in wanted]
    return pl.concat(frames) if frames else empty_frame(SpeakerClusters)


def remove_cluster_part(wh: Warehouse, batch_id: str) -> None:
    wh.remove(cluster_part(wh, batch_id))


# -- speaker_centroids: the clustering state -------------------------------------------------
def read_small(wh: Warehouse, table: str, model) -> pl.DataFrame:
    df = wh.read_table(table)
    return conform(df, model) if df is not None else empty_frame(model)


def load_index(wh: Warehouse, model: str) -> tuple[VoiceIndex, pl.DataFrame]:
    """The index of ``model`` plus every centroid row (all models, all statuses)."""
    rows = read_small(wh, CENTROIDS, SpeakerCentroids)
    profiles = read_small(wh, PROFILES, SpeakerProfiles)
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
    now = _now()
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


# -- profiles and suggestions ----------------------------------------------------------------
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
        moved.append({"global_speaker_id": new, "name": names[old], "named_at": _now()})
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


def speaker_map_png(X: np.ndarray, ids: list[str], max_points: int = 3000, seed: int = 0) -> bytes:
    """2-D PCA map of speaker embeddings coloured by global id (the 20 largest; rest grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids_arr = np.asarray(ids)
    if len(X) > max_points:
        pick = np.random.default_rng(seed).choice(len(X), max_points, replace=False)
        X, ids_arr = X[pick], ids_arr[pick]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    if len(X) >= 2:
        Xc = X - X.mean(axis=0)
        _, _, vt = np.linalg.svd(Xc, full_matrices=False)
        P = Xc @ vt[:2].T
    else:
        P = np.zeros((len(X), 2))
    uniq, counts = np.unique(ids_arr, return_counts=True)
    top = [u for _, u in sorted(zip(-counts, uniq))][:20]
    cmap = plt.get_cmap("tab20")
    other = ~np.isin(ids_arr, top)
    if other.any():
        ax.scatter(P[other, 0], P[other, 1], s=8, c="lightgrey", label="other ids")
    for i, gid in enumerate(top):
        m = ids_arr == gid
        ax.scatter(P[m, 0], P[m, 1], s=14, color=cmap(i % 20), label=gid)
    ax.set_title(f"speaker embeddings (PCA), {len(uniq)} global ids")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(top) <= 12:
        ax.legend(fontsize=7, loc="best")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()

"""A 2-D picture of the speaker embeddings, coloured by global id (shown in the UI)."""

from __future__ import annotations

import io

import numpy as np


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

"""Archive-wide speaker identity: clustering speaker embeddings into global speaker ids.

No Dagster here. The state is a :class:`~.voices.VoiceIndex`: one centroid (unit vector) per
global speaker id, for one embedding model; the thresholds are a :class:`~.params.ClusterParams`.

**Assigning new speakers** (:func:`assign_new`, after every batch): each new local speaker
is compared with the centroids only (``K`` voices, not the ``N`` local speakers of the
archive): it joins the most similar voice when the cosine similarity reaches what it
needs (:meth:`ClusterParams.required`: ``threshold`` with enough speech, more with little,
decided by the shorter of the speaker and the voice; that centroid moves to the new
weighted mean), otherwise it mints a new id. Cost: ``O(batch x K x dim)``, independent of how many files the archive holds.

**Re-clustering** (:func:`recluster`, nightly): DP-means (k-means that opens a new
cluster for any point further than a threshold), warm-started from the previous
centroids so existing voices keep their place:

1. assign every embedding to its most similar centroid (chunked matrix products, so memory
   stays at ``chunk x K`` whatever ``N`` is);
2. embeddings below ``threshold`` to every centroid are grouped among themselves
   (average-linkage on at most ``seed_rows`` at a time) and become new centroids;
3. centroids move to the weighted mean of their members (weights: seconds of speech,
   capped); centroids more similar than ``merge_threshold`` are merged;
4. repeat ``iterations`` times, then name the clusters (:func:`stable_ids`).

**Kept apart**: ids a person split (``speakers split``, ``VoiceIndex.distinct``) never end
up in one cluster: such a cluster is cut again along their members.

**Stable ids**: a final cluster inherits the previous id that most of its members (by
weight) carried; each previous id goes to at most one cluster, greedily by shared weight.
*Merge*: when two previous ids end up in one cluster, the one with more shared weight
survives and the other is recorded as ``merged`` into it (names follow: see
``speaker_profiles`` in the README). *Split*: when one previous id's members end up in
two clusters, the bigger part keeps the id and the other part gets a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .params import ClusterParams
from .voices import VoiceIndex, normalize


def _weights(speech_s: np.ndarray, params: ClusterParams) -> np.ndarray:
    return np.clip(np.asarray(speech_s, dtype=np.float64), 0.5, params.max_weight_s)


def assign_new(
    index: VoiceIndex,
    embeddings: np.ndarray,
    speech_s: np.ndarray,
    params: ClusterParams = ClusterParams(),
    groups: list[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Global ids for new local speakers; updates ``index`` in place. ``O(n x K)``.
    ``groups`` (the media id of each row): two local speakers of one file are different
    people (diarization kept them apart), so they never join the same voice."""
    X = normalize(embeddings)
    w = _weights(speech_s, params)
    need = params.required(speech_s)
    ids: list[str] = []
    sims = np.zeros(len(X), np.float64)
    # the most confident speakers first, so that a new voice is founded by its best sample
    taken: dict[str, set[int]] = {}
    for i in np.argsort(-w, kind="stable"):
        group = taken.setdefault(groups[i], set()) if groups is not None else set()
        if len(index):
            s = index.centroids @ X[i]
            if group:
                s[list(group)] = -np.inf
            k = int(s.argmax())
            # the shorter side decides: a voice founded by a few seconds is no surer than they are
            if s[k] >= max(need[i], float(params.required(index.weights[k]))):
                total = index.weights[k] + w[i]
                index.centroids[k] = normalize(index.centroids[k] * index.weights[k] + X[i] * w[i])
                index.weights[k] = total
                index.members[k] += 1
                ids.append((int(i), index.ids[k]))
                group.add(k)
                continue
        k = index.add(index.mint(), X[i], w[i])
        ids.append((int(i), index.ids[k]))
        group.add(k)
    out = [""] * len(X)
    for i, gid in ids:
        out[i] = gid
    # similarity to the final centroid of the voice each speaker joined
    pos = {gid: k for k, gid in enumerate(index.ids)}
    for i, gid in enumerate(out):
        sims[i] = float(index.centroids[pos[gid]] @ X[i])
    return out, sims


def _best(X: np.ndarray, C: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and similarity of the most similar centroid for every row (chunked)."""
    n = len(X)
    best = np.full(n, -1, np.int64)
    sim = np.full(n, -np.inf, np.float32)
    if len(C) == 0:
        return best, sim
    for lo in range(0, n, chunk):
        s = X[lo : lo + chunk] @ C.T  # (chunk, K)
        k = s.argmax(axis=1)
        best[lo : lo + chunk] = k
        sim[lo : lo + chunk] = s[np.arange(len(k)), k]
    return best, sim


def _means(X: np.ndarray, w: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums = np.zeros((k, X.shape[1]), np.float32)
    sums[sorted_labels[starts]] = np.add.reduceat(X[order] * w[order, None].astype(np.float32), starts, axis=0)
    weight = np.bincount(labels, weights=w, minlength=k)
    return normalize(sums), weight


def _seed(X: np.ndarray, threshold: float, short: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage groups of a few thousand unassigned rows -> centroids. Rows with
    short speech (``short``) seed voices of their own: two short speakers of different
    real people are often as similar as one person's (README "Speakers on real voices")."""
    short = np.zeros(len(X), bool) if short is None else short
    full = np.flatnonzero(~short)
    seeds = [X[short]]
    if len(full) == 1:
        seeds.append(X[full])
    elif len(full) > 1:
        from scipy.cluster.hierarchy import fcluster, linkage

        Z = linkage(X[full].astype(np.float64), method="average", metric="cosine")
        labels = fcluster(Z, t=1.0 - threshold, criterion="distance") - 1
        seeds.append(_means(X[full], np.ones(len(full)), labels, int(labels.max()) + 1)[0])
    return np.vstack(seeds)


def _keep_apart(
    X: np.ndarray, labels: np.ndarray, previous: list[str | None], distinct: set[frozenset[str]]
) -> np.ndarray:
    """Clusters holding members of two ids a person split apart are cut in two again: each
    of those ids' members stay together, every other member goes to the nearer part."""
    if not distinct:
        return labels
    labels = labels.copy()
    next_label = int(labels.max()) + 1 if len(labels) else 0
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        prev = {previous[r] for r in rows if previous[r]}
        clash = [pair for pair in distinct if pair <= prev]
        if not clash:
            continue
        sides = sorted({g for pair in clash for g in pair})
        parts = {g: rows[[previous[r] == g for r in rows]] for g in sides}
        C = normalize(np.stack([X[parts[g]].mean(axis=0) for g in sides]))
        part_of = {}
        for r in rows:
            part_of[r] = sides.index(previous[r]) if previous[r] in parts else int((C @ X[r]).argmax())
        for k in range(1, len(sides)):
            for r in rows:
                if part_of[r] == k:
                    labels[r] = next_label
            next_label += 1
    return labels


def _merge_close(
    C: np.ndarray, threshold: float, chunk: int, weights: np.ndarray | None = None, params: ClusterParams | None = None
) -> np.ndarray:
    """Union-find over centroid pairs above ``threshold`` (and above what the lighter of the
    two needs to join, by its seconds of speech); returns each centroid's group."""
    parent = np.arange(len(C))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for lo in range(0, len(C), chunk):
        s = C[lo : lo + chunk] @ C.T
        rows, cols = np.nonzero(s >= threshold)
        for r, c in zip(rows + lo, cols):
            lighter = min(weights[r], weights[c]) if weights is not None and params is not None else None
            if lighter is not None and s[r - lo, c] < float(params.required(lighter)):
                continue
            if r < c:
                ra, rb = find(r), find(c)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(len(C))])
    _, group = np.unique(roots, return_inverse=True)
    return group


def _one_per_file(
    X: np.ndarray, labels: np.ndarray, w: np.ndarray, need: np.ndarray, groups: list[str] | None
) -> np.ndarray:
    """Two local speakers of one file are two people (diarization kept them apart): where
    a cluster holds several of one file, the heaviest stays and each other one goes to the
    most similar cluster holding nobody of its file that it is similar enough to, and no
    speaker under ``min_speech_s`` (who is never joined), or to a voice of its own (the rule
    incremental assignment follows). Vectorised over the rows;
    only the duplicates, rare, are looked at one by one."""
    if groups is None or len(labels) < 2:
        return labels
    import polars as pl

    g = pl.Series(groups, dtype=pl.Utf8).rank("dense").to_numpy().astype(np.int64) - 1  # 0.1 s at 1M rows
    key = labels.astype(np.int64) * (int(g.max()) + 1) + g
    order = np.lexsort((-w, key))
    dup = order[1:][key[order][1:] == key[order][:-1]]
    if not len(dup):
        return labels
    labels = labels.copy()
    k = int(labels.max()) + 1
    C = np.zeros((k, X.shape[1]), np.float64)
    np.add.at(C, labels, X * w[:, None])
    C = normalize(C.astype(np.float32))
    moved = np.zeros(len(labels), bool)
    moved[dup] = True
    taken: dict[int, set[int]] = {}
    for r in np.flatnonzero(np.isin(g, g[dup]) & ~moved):
        taken.setdefault(int(g[r]), set()).add(int(labels[r]))
    # a speaker under min_speech_s (need = inf) is never joined: its voice takes nobody
    closed = sorted({int(x) for x in labels[np.isinf(need) & ~moved]})
    for r in dup[np.argsort(-w[dup], kind="stable")]:
        mine = taken.setdefault(int(g[r]), set())
        s = C @ X[r]
        s[list(mine & set(range(len(C))))] = -np.inf
        s[closed] = -np.inf
        best = int(s.argmax())
        if s[best] >= need[r] - 1e-6:
            labels[r] = best
        else:
            labels[r] = k
            k += 1
        mine.add(int(labels[r]))
    return labels


@dataclass
class ReclusterReport:
    kept_ids: int = 0
    new_ids: int = 0
    merges: list[tuple[str, str]] = field(default_factory=list)  # (retired id, surviving id)
    splits: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id for the other part)


def recluster(
    embeddings: np.ndarray,
    speech_s: np.ndarray,
    previous_ids: list[str | None],
    index: VoiceIndex,
    params: ClusterParams = ClusterParams(),
    groups: list[str] | None = None,
) -> tuple[list[str], np.ndarray, VoiceIndex, ReclusterReport]:
    """Cluster every local speaker of one model; returns ids, similarities, the new index.

    ``index`` is the previous state for the same model (possibly empty); ``previous_ids``
    the global id each row had before (``None`` for speakers never assigned); ``groups``
    the media id of each row: two local speakers of one file never end under one id.
    """
    X = normalize(embeddings)
    w = _weights(speech_s, params)
    need = params.required(speech_s).astype(np.float32)
    n = len(X)
    report = ReclusterReport()
    if n == 0:
        return (
            [],
            np.zeros(0),
            VoiceIndex(
                model=index.model,
                merged=dict(index.merged),
                next_number=index.next_number,
                distinct=set(index.distinct),
            ),
            report,
        )
    C = (
        index.centroids.copy()
        if len(index) and index.centroids.shape[1] == X.shape[1]
        else np.zeros((0, X.shape[1]), np.float32)
    )
    for _ in range(params.iterations):
        labels, sim = _best(X, C, params.chunk_rows)
        unassigned = np.flatnonzero(sim < need)
        while len(unassigned):
            todo = unassigned[: params.seed_rows]
            short = need[todo] > params.threshold + 1e-6
            seeds = _seed(X[todo], params.threshold, short=short)
            base = len(C)
            C = np.vstack([C, seeds]) if len(C) else seeds
            # a short speaker takes the voice it seeded (the first seeds, in order) ...
            labels[todo[short]] = base + np.arange(int(short.sum()))
            sim[todo[short]] = 1.0
            # ... the others the most similar seed they are similar enough to
            rest = np.setdiff1d(unassigned, todo[short])
            sub_best, sub_sim = _best(X[rest], seeds, params.chunk_rows)
            ok = sub_sim >= need[rest] - 1e-6
            labels[rest[ok]] = sub_best[ok] + base
            sim[rest[ok]] = sub_sim[ok]
            unassigned = rest[~ok]
        used, labels = np.unique(labels, return_inverse=True)
        C, cw = _means(X, w, labels, len(used))
        group = _merge_close(C, params.merge_threshold, params.chunk_rows, cw, params)
        if group.max() + 1 < len(C):
            C, cw = _means(X, w, group[labels], int(group.max()) + 1)
    labels, sim = _best(X, C, params.chunk_rows)
    short = np.isinf(need)  # under min_speech_s: never joins a voice, nor is joined (its own id)
    if short.any():
        labels = labels.copy()
        labels[short] = int(labels.max()) + 1 + np.arange(int(short.sum()))
        labels = np.unique(labels, return_inverse=True)[1].ravel()
    resolved = [index.resolve(p) if p else None for p in previous_ids]
    labels = _keep_apart(X, labels, resolved, index.distinct)
    labels = _one_per_file(X, labels, w, need, groups)
    used, labels = np.unique(labels, return_inverse=True)
    C, cw = _means(X, w, labels, len(used))
    sim = np.einsum("nd,nd->n", X, C[labels])

    new_index = VoiceIndex(
        model=index.model, merged=dict(index.merged), next_number=index.next_number, distinct=set(index.distinct)
    )
    names = stable_ids(labels, w, resolved, new_index, report)
    new_index.ids = names
    new_index.centroids = C.astype(np.float32)
    new_index.weights = cw
    new_index.members = np.bincount(labels, minlength=len(C)).astype(np.int64)
    return [names[k] for k in labels], sim.astype(np.float64), new_index, report


def stable_ids(
    labels: np.ndarray, w: np.ndarray, previous: list[str | None], index: VoiceIndex, report: ReclusterReport
) -> list[str]:
    """Name clusters ``0..K-1`` after the previous ids of their members (module docstring)."""
    k = int(labels.max()) + 1 if len(labels) else 0
    shared: dict[tuple[int, str], float] = {}
    for lab, wt, prev in zip(labels, w, previous):
        if prev:
            shared[(int(lab), prev)] = shared.get((int(lab), prev), 0.0) + float(wt)
    names: list[str | None] = [None] * k
    owner: dict[str, int] = {}
    for (lab, prev), _ in sorted(shared.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0])):
        if names[lab] is None and prev not in owner:
            names[lab] = prev
            owner[prev] = lab
    report.kept_ids = len(owner)
    # previous ids that lost out: merged into the cluster holding most of their weight,
    # or (if their members all went to clusters named after other ids) split off
    best_home: dict[str, tuple[float, int]] = {}
    for (lab, prev), wt in shared.items():
        if prev not in best_home or wt > best_home[prev][0]:
            best_home[prev] = (wt, lab)
    for lab in range(k):
        if names[lab] is None:
            names[lab] = index.mint()
            report.new_ids += 1
            # a new cluster made mostly of one previous id's members is a split of that id
            parts = {prev: wt for (lb, prev), wt in shared.items() if lb == lab}
            if parts:
                origin = max(parts, key=parts.get)
                if origin in owner:
                    report.splits.append((origin, names[lab]))
    for prev, (_, lab) in best_home.items():
        if prev not in owner:
            index.merged[prev] = names[lab]
            report.merges.append((prev, names[lab]))
    return [n for n in names if n is not None]

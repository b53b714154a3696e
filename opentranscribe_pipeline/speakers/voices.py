"""The voices of one embedding model: a centroid per global id, and what may change them.

A :class:`VoiceIndex` is what the clustering (:mod:`.cluster`) grows and re-computes and what a
person's edits (:mod:`.edits`: ``speakers split`` / ``speakers merge``) change, through its
operations (:meth:`~VoiceIndex.add`, :meth:`~VoiceIndex.split`, :meth:`~VoiceIndex.merge`),
never by writing its arrays from outside. Ids are ``spk-<number>``, minted from
``next_number``; a merged id points to the id that absorbed it, and :func:`resolve_merged` is
the one place that follows such chains (with a guard against a cycle in a hand-edited table).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

ID_RE = re.compile(r"^spk-(\d+)$")


def format_id(number: int) -> str:
    return f"spk-{number:06d}"


def id_number(gid: str) -> int:
    m = ID_RE.match(gid)
    return int(m.group(1)) if m else -1


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def resolve_merged(merged: Mapping[str, str], gid: str) -> str:
    """Follow ``merged`` (retired id -> the id that absorbed it) from ``gid`` to the id that
    holds the voice now. A cycle (only a hand-edited ``speaker_centroids`` can hold one) stops
    where it would come round again instead of looping."""
    seen = set()
    while gid in merged and gid not in seen:
        seen.add(gid)
        gid = merged[gid]
    return gid


@dataclass
class VoiceIndex:
    """Centroids of the active global ids of one embedding model, plus id bookkeeping."""

    model: str
    ids: list[str] = field(default_factory=list)
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (K, dim)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # (K,)
    members: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (K,)
    merged: dict[str, str] = field(default_factory=dict)  # retired id -> the id that absorbed it
    next_number: int = 1
    distinct: set[frozenset[str]] = field(default_factory=set)  # pairs a person split: never merged

    def distinct_from(self, gid: str) -> list[str]:
        return sorted(g for pair in self.distinct if gid in pair for g in pair if g != gid)

    def kept_apart(self, a: str, b: str) -> bool:
        """Whether a person split ``a`` and ``b`` (they are never merged again)."""
        return frozenset((a, b)) in self.distinct

    def runner_up(self, gids: list[str], vectors: np.ndarray) -> np.ndarray:
        """Similarity of each vector to the most similar centroid other than its own id's
        (-1 when there is no other voice)."""
        out = np.full(len(gids), -1.0)
        if len(self) < 2 or len(gids) == 0:
            return out
        pos = {g: k for k, g in enumerate(self.ids)}
        S = normalize(np.asarray(vectors)) @ self.centroids.T  # (n, K)
        for i, gid in enumerate(gids):
            if gid in pos:
                S[i, pos[gid]] = -np.inf
        return np.maximum(S.max(axis=1), -1.0).astype(np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    def mint(self) -> str:
        gid = format_id(self.next_number)
        self.next_number += 1
        return gid

    def resolve(self, gid: str) -> str:
        """Follow merges to the id that holds the voice now."""
        return resolve_merged(self.merged, gid)

    def similarities(self, gids: list[str], vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of each vector to the centroid of its id (1.0 for an id this
        index does not hold)."""
        pos = {g: k for k, g in enumerate(self.ids)}
        out = np.ones(len(gids), np.float64)
        for i, (gid, v) in enumerate(zip(gids, vectors)):
            if gid in pos:
                out[i] = float(self.centroids[pos[gid]] @ np.asarray(v))
        return out

    # -- operations -------------------------------------------------------------------------
    def add(self, gid: str, vector: np.ndarray, weight: float, members: int = 1) -> int:
        """A new voice ``gid`` at ``vector`` (normalised here); returns its position."""
        v = normalize(vector)[None]
        self.centroids = v if self.centroids.size == 0 else np.vstack([self.centroids, v])
        self.ids.append(gid)
        self.weights = np.append(self.weights, weight)
        self.members = np.append(self.members, members)
        return len(self.ids) - 1

    def keep_apart(self, gids: Iterable[str]) -> None:
        """Record every pair of ``gids`` as split by a person: no clustering joins them again."""
        gids = list(gids)
        for a in gids:
            for b in gids:
                if a < b:
                    self.distinct.add(frozenset((a, b)))

    def split(self, gid: str, vectors: np.ndarray, weights: np.ndarray, part: np.ndarray, n_parts: int) -> list[str]:
        """One voice that is several people (``speakers split``). ``vectors`` (unit rows) and
        ``weights`` are the members of ``gid``, ``part`` the part (``0..n_parts-1``) each one
        goes to: part 0 keeps ``gid``, every other part becomes a new voice with an id minted
        here, and all of them are kept apart from now on. Each part's centroid is the
        weighted mean of its members. Returns the id of each part."""
        names = [gid, *(self.mint() for _ in range(1, n_parts))]
        pos = self.ids.index(gid)
        for k, name in enumerate(names):
            mask = part == k
            centroid = normalize((vectors[mask] * weights[mask, None]).sum(axis=0))
            if k == 0:
                self.centroids[pos] = centroid
                self.weights[pos] = float(weights[mask].sum())
                self.members[pos] = int(mask.sum())
            else:
                self.add(name, centroid, float(weights[mask].sum()), members=int(mask.sum()))
        self.keep_apart(names)
        return names

    def merge(self, source: str, target: str) -> None:
        """One person under two ids (``speakers merge``): ``source``'s centroid, weight and
        members join ``target`` (weighted mean), whatever ``source`` was kept apart from,
        ``target`` is now, and ``source`` is retired as merged into ``target``. Both must be
        active voices of this index."""
        a, b = self.ids.index(source), self.ids.index(target)
        self.centroids[b] = normalize(self.centroids[a] * self.weights[a] + self.centroids[b] * self.weights[b])
        self.weights[b] += self.weights[a]
        self.members[b] += self.members[a]
        for pair in [p for p in self.distinct if source in p]:
            self.distinct.add(frozenset({target, *(pair - {source})}))
            self.distinct.discard(pair)
        keep = [k for k in range(len(self)) if k != a]
        self.ids = [self.ids[k] for k in keep]
        self.centroids, self.weights, self.members = self.centroids[keep], self.weights[keep], self.members[keep]
        self.merged[source] = target

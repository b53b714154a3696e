"""How well an embedding model tells people apart, measured on labelled voices (no Dagster).

Two uses:

- the benchmark (``benchmarks/speakers_quality.py --real``) passes embeddings of real speech
  with a reference (who is who) to :func:`pair_similarities` and :func:`operating_point`;
- an operator recalibrates on their own archive with :func:`calibrate_warehouse`
  (``opentranscribe speakers calibrate``): two local speakers of one file are different
  people (diarization kept them apart), and local speakers of different files whose global
  ids carry the same *name* are one person (a human said so). Their similarity
  distributions, per amount of speech, show where the join threshold must sit on that
  archive's own voices, microphones and languages.

A *false merge* here is a pair of different people at or above the similarity a speaker
needs to join a voice; a *missed join* is a pair of one person across files below it.
Pairs are not clusters: a voice's centroid averages many files, so rates on pairs are a
pessimistic estimate of both errors for long-lived voices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .params import ClusterParams
from .voices import normalize, resolve_merged

SPEECH_BUCKETS = ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 10.0), (10.0, float("inf")))


@dataclass(frozen=True)
class Pairs:
    """Similarities of labelled pairs; ``shorter_s``: the speech of the shorter one."""

    same: np.ndarray  # one person, different files
    same_shorter_s: np.ndarray
    different: np.ndarray  # two people (any files)
    different_shorter_s: np.ndarray


def pair_similarities(
    vectors: np.ndarray, person: list[str], file: list[str], speech_s: np.ndarray, *, max_pairs: int = 200_000
) -> Pairs:
    """Every pair of rows: one person in two files (same) or two people (different). Pairs of
    one person inside one file are left out (same recording: easier than the real task)."""
    X = normalize(vectors)
    n = len(X)
    iu, ju = np.triu_indices(n, k=1)
    if len(iu) > max_pairs:
        pick = np.random.default_rng(0).choice(len(iu), max_pairs, replace=False)
        iu, ju = iu[pick], ju[pick]
    p, f = np.asarray(person, dtype=object), np.asarray(file, dtype=object)
    sims = np.einsum("nd,nd->n", X[iu], X[ju])
    shorter = np.minimum(np.asarray(speech_s, float)[iu], np.asarray(speech_s, float)[ju])
    same = (p[iu] == p[ju]) & (f[iu] != f[ju])
    diff = p[iu] != p[ju]
    return Pairs(sims[same], shorter[same], sims[diff], shorter[diff])


@dataclass(frozen=True)
class OperatingPoint:
    """Error rates on pairs at the join requirement of ``params`` (speech-dependent)."""

    false_merges: int
    different_pairs: int
    missed_joins: int
    same_pairs: int

    @property
    def false_merge_rate(self) -> float:
        return self.false_merges / self.different_pairs if self.different_pairs else 0.0

    @property
    def missed_join_rate(self) -> float:
        return self.missed_joins / self.same_pairs if self.same_pairs else 0.0


def operating_point(pairs: Pairs, params: ClusterParams) -> OperatingPoint:
    need_d = params.required(pairs.different_shorter_s)
    need_s = params.required(pairs.same_shorter_s)
    return OperatingPoint(
        false_merges=int((pairs.different >= need_d).sum()),
        different_pairs=len(pairs.different),
        missed_joins=int((pairs.same < need_s).sum()),
        same_pairs=len(pairs.same),
    )


def distribution_rows(pairs: Pairs) -> list[dict]:
    """Quantiles of both distributions per speech bucket (of the shorter speaker)."""
    rows = []
    for lo, hi in SPEECH_BUCKETS:
        for kind, sims, shorter in (
            ("same person", pairs.same, pairs.same_shorter_s),
            ("different people", pairs.different, pairs.different_shorter_s),
        ):
            x = sims[(shorter >= lo) & (shorter < hi)]
            row = {"speech_s": f"{lo:g}-{hi:g}", "pairs": kind, "n": len(x)}
            if len(x):
                row |= {
                    "min": float(x.min()),
                    "p05": float(np.percentile(x, 5)),
                    "median": float(np.median(x)),
                    "p95": float(np.percentile(x, 95)),
                    "max": float(x.max()),
                }
            rows.append(row)
    return rows


@dataclass
class WarehouseCalibration:
    model: str
    local_speakers: int
    files: int
    named_people: int
    pairs: Pairs
    params: ClusterParams
    point: OperatingPoint
    rows: list[dict] = field(default_factory=list)
    safe_threshold: float | None = None  # above every different-people pair with >= full_speech_s


def calibrate_warehouse(wh, model: str, params: ClusterParams | None = None) -> WarehouseCalibration:
    """Labelled pairs from the archive itself (module docstring) and the error rates of the
    current thresholds on them."""
    from .index_rows import merged_into, read_embeddings
    from .state import SpeakerState

    params = params or ClusterParams.for_model(model)
    state = SpeakerState(wh)
    gen = state.current()
    emb = read_embeddings(wh).filter(pl.col("model") == model)
    clusters = state.read_clusters(gen).select("media_id", "speaker", "global_speaker_id")
    centroids = state.read(gen, "speaker_centroids")
    merged = merged_into(centroids)
    names = {}
    for gid, name in zip(*state.read(gen, "speaker_profiles").select("global_speaker_id", "name")):
        names[gid] = name
    emb = emb.join(clusters, on=["media_id", "speaker"], how="left")

    def person(media_id: str, speaker: str, gid: str | None) -> str:
        gid = resolve_merged(merged, gid) if gid is not None else gid
        if gid in names:
            return f"name:{names[gid]}"
        return f"local:{media_id}:{speaker}"  # unknown person: only its own file's others are surely different

    people = [person(m, s, g) for m, s, g in zip(emb["media_id"], emb["speaker"], emb["global_speaker_id"])]
    files = emb["media_id"].to_list()
    if emb.height < 2:
        empty = np.zeros(0)
        pairs = Pairs(empty, empty, empty, empty)
    else:
        X = emb["embedding"].to_numpy()
        all_pairs = pair_similarities(X, people, files, emb["speech_s"].to_numpy())
        # "different" only where we know: same file (diarization), or two different names
        named = np.array([p.startswith("name:") for p in people])
        n = len(X)
        iu, ju = np.triu_indices(n, k=1)
        f = np.asarray(files, dtype=object)
        p = np.asarray(people, dtype=object)
        known_diff = (p[iu] != p[ju]) & ((f[iu] == f[ju]) | (named[iu] & named[ju]))
        Xn = normalize(X)
        sims = np.einsum("nd,nd->n", Xn[iu[known_diff]], Xn[ju[known_diff]])
        speech = emb["speech_s"].to_numpy().astype(float)
        shorter = np.minimum(speech[iu[known_diff]], speech[ju[known_diff]])
        pairs = Pairs(all_pairs.same, all_pairs.same_shorter_s, sims, shorter)
    long_diff = pairs.different[pairs.different_shorter_s >= params.full_speech_s]
    return WarehouseCalibration(
        model=model,
        local_speakers=emb.height,
        files=len(set(files)),
        named_people=len({p for p in people if p.startswith("name:")}),
        pairs=pairs,
        params=params,
        point=operating_point(pairs, params),
        rows=distribution_rows(pairs),
        safe_threshold=round(float(long_diff.max()) + 0.02, 3) if len(long_diff) else None,
    )


def format_report(c: WarehouseCalibration) -> str:
    lines = [
        f"model {c.model}: {c.local_speakers} local speakers in {c.files} files, {c.named_people} named people",
        f"pairs known to be different people (same file, or two names): {len(c.pairs.different)}; "
        f"one named person in two files: {len(c.pairs.same)}",
        "",
        f"{'speech (shorter)':>16}  {'pairs':<17} {'n':>7} {'min':>6} {'p05':>6} {'median':>6} {'p95':>6} {'max':>6}",
    ]
    for r in c.rows:
        stats = "".join(f" {r[k]:6.3f}" for k in ("min", "p05", "median", "p95", "max")) if r["n"] else ""
        lines.append(f"{r['speech_s'] + ' s':>16}  {r['pairs']:<17} {r['n']:7d}{stats}")
    p = c.params
    lines += [
        "",
        f"join needs {p.threshold:.2f} from {p.full_speech_s:g} s of speech, {p.short_threshold:.2f} "
        f"up to {p.short_speech_s:g} s (merge {p.merge_threshold:.2f})",
        f"  different people at or above it: {c.point.false_merges} of {c.point.different_pairs} pairs "
        f"({c.point.false_merge_rate:.2%}); one person below it: {c.point.missed_joins} of {c.point.same_pairs} "
        f"({c.point.missed_join_rate:.2%})",
    ]
    if c.safe_threshold is not None:
        lines.append(
            f"  every different-people pair with >= {p.full_speech_s:g} s is below {c.safe_threshold - 0.02:.3f}: "
            f"a `threshold` of at least {c.safe_threshold:.2f} keeps them apart on this archive"
        )
    if not c.pairs.same.size:
        lines.append("  name a few voices (`speakers name`) that recur across files to measure missed joins")
    return "\n".join(lines)

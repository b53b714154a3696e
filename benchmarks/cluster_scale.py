"""Speaker clustering at archive scale, on synthetic embeddings (256-d unit vectors).

Voices are points on the unit sphere around a shared direction (different voices ~0.55
cosine apart, like the packaged encoder's), local speakers are noisy copies (~0.9 to their
voice). Each case runs in a fresh subprocess so that its peak memory (ru_maxrss) is its own.

Prints, with baselines measured in the same run:
- full re-clustering of N local speakers (cold, then warm from the previous centroids:
  time, peak memory, purity/coverage, ids kept) vs scipy average-linkage on a subset;
- assigning one new batch (200 local speakers) against archives of 10k and 100k local
  speakers: our centroid comparison vs a linear scan over every stored embedding (what
  OpenTranscribe's users describe).

Run: ``.venv/bin/python benchmarks/cluster_scale.py [--n 100000] [--voices 2000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synth(n: int, voices: int, seed: int = 0, first_voice: int = 0):
    """``n`` local speakers of voices ``first_voice .. voices-1`` (the voices themselves are
    fixed: the same voice index is the same voice in every call)."""
    from opentranscribe_pipeline.speakers.cluster import normalize

    vrng = np.random.default_rng(12345)
    base = normalize(vrng.normal(size=256))
    centers = normalize(base * 1.2 + normalize(vrng.normal(size=(voices, 256))))
    rng = np.random.default_rng(seed)
    labels = rng.integers(first_voice, voices, n)
    X = normalize(centers[labels] + rng.normal(size=(n, 256)).astype(np.float32) * 0.02)
    return X, labels, rng.uniform(1, 60, n)


def purity_coverage(pred, true):
    import collections

    by_c, by_t = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for p, t in zip(pred, true):
        by_c[p][t] += 1
        by_t[t][p] += 1
    return sum(max(c.values()) for c in by_c.values()) / len(pred), sum(max(c.values()) for c in by_t.values()) / len(
        pred
    )


def case_full(n: int, voices: int) -> dict:
    from opentranscribe_pipeline.speakers.cluster import VoiceIndex, recluster

    X, labels, w = synth(n, voices)
    t = time.perf_counter()
    ids, _, index, _ = recluster(X, w, [None] * n, VoiceIndex(model="m"))
    cold = time.perf_counter() - t
    # a new day: 2% more local speakers, of the known voices and as many new ones
    X2, labels2, w2 = synth(n // 50, voices * 2, seed=1)
    Xa, wa = np.vstack([X, X2]), np.concatenate([w, w2])
    t = time.perf_counter()
    ids2, _, _, rep = recluster(Xa, wa, ids + [None] * len(X2), index)
    warm = time.perf_counter() - t
    p, c = purity_coverage(ids, labels)
    return {
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "purity": round(p, 4),
        "coverage": round(c, 4),
        "ids": len(set(ids)),
        "ids_changed_for_existing": sum(a != b for a, b in zip(ids, ids2)),
        "ids_new": rep.new_ids,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def case_linkage(n: int, voices: int) -> dict:
    from scipy.cluster.hierarchy import fcluster, linkage

    X, labels, _ = synth(n, voices)
    t = time.perf_counter()
    Z = linkage(X.astype(np.float64), method="average", metric="cosine")
    pred = fcluster(Z, t=0.2, criterion="distance")
    p, c = purity_coverage(pred, labels)
    return {
        "time_s": round(time.perf_counter() - t, 2),
        "purity": round(p, 4),
        "coverage": round(c, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def case_assign(n: int, voices: int) -> dict:
    from opentranscribe_pipeline.speakers.cluster import VoiceIndex, assign_new, recluster

    X, labels, w = synth(n, voices)
    _, _, index, _ = recluster(X, w, [None] * n, VoiceIndex(model="m"))
    new, new_labels, new_w = synth(200, voices, seed=5)  # known voices
    t = time.perf_counter()
    assign_new(index, new, new_w)
    ours = time.perf_counter() - t
    # baseline: compare each new speaker with every stored embedding (linear scan)
    t = time.perf_counter()
    for v in new:
        s = X @ v
        int(s.argmax())
    scan = time.perf_counter() - t
    return {"ours_s": round(ours, 4), "linear_scan_s": round(scan, 4), "voices": len(index)}


def run_case(name: str, *args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", name, *map(str, args)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--voices", type=int, default=2000)
    ap.add_argument("--case")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if args.case:
        n, voices = map(int, args.rest)
        print(json.dumps({"full": case_full, "linkage": case_linkage, "assign": case_assign}[args.case](n, voices)))
        return
    print(f"full re-clustering, {args.n} local speakers of {args.voices} voices:")
    full = run_case("full", args.n, args.voices)
    print(
        f"  ours: cold {full['cold_s']} s, warm {full['warm_s']} s (+2% speakers), peak {full['peak_rss_mb']} MB, "
        f"purity {full['purity']}, coverage {full['coverage']}, {full['ids']} ids, "
        f"{full['ids_changed_for_existing']} existing ids changed, {full['ids_new']} new"
    )
    full10 = run_case("full", args.n, args.voices * 5)
    print(
        f"  ours with {args.voices * 5} voices: cold {full10['cold_s']} s, warm {full10['warm_s']} s, "
        f"peak {full10['peak_rss_mb']} MB, purity {full10['purity']}, coverage {full10['coverage']}"
    )
    sub = 10_000
    link = run_case("linkage", sub, args.voices)
    ours_sub = run_case("full", sub, args.voices)
    print(
        f"  baseline scipy average linkage on {sub}: {link['time_s']} s, peak {link['peak_rss_mb']} MB "
        f"(O(n^2) memory: {args.n} would need ~{args.n**2 * 4 // 2**30} GiB); ours on {sub}: {ours_sub['cold_s']} s, "
        f"peak {ours_sub['peak_rss_mb']} MB -> ratio {link['time_s'] / max(ours_sub['cold_s'], 1e-3):.1f}x"
    )
    print("assigning one new batch (200 local speakers):")
    for n in (10_000, args.n):
        a = run_case("assign", n, args.voices)
        print(
            f"  archive of {n}: ours {a['ours_s'] * 1000:.1f} ms ({a['voices']} centroids), linear scan "
            f"{a['linear_scan_s'] * 1000:.1f} ms -> ratio {a['linear_scan_s'] / max(a['ours_s'], 1e-6):.1f}x"
        )


if __name__ == "__main__":
    main()

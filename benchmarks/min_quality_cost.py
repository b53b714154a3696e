"""What ``--min-quality`` costs search and export, and what ``query quality`` costs, measured
against the plain call in the same run (interleaved, best and median of N).

On a copy of a processed warehouse (``--warehouse``: e.g. the sample archive after
``make run``, or the tests' shared archive) with its search index. Where the warehouse has no
``segment_quality`` yet, scores are written for its real segments (deterministic, 1.5 to 4.5
by a hash of the segment) so the filter has something to judge; the report says which.

    .venv/bin/python benchmarks/min_quality_cost.py --warehouse warehouse
    .venv/bin/python benchmarks/min_quality_cost.py --warehouse warehouse --repeats 30 --mode hybrid
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentranscribe_pipeline import settings  # noqa: E402
from opentranscribe_pipeline.deliver.documents import documents, gather  # noqa: E402
from opentranscribe_pipeline.query.quality import needs_attention  # noqa: E402
from opentranscribe_pipeline.search.service import open_search_backend, query_embedder, search  # noqa: E402
from opentranscribe_pipeline.storage import Warehouse  # noqa: E402

FLOOR = 3.0
N_QUERIES = 8


def queries(wh: Warehouse) -> list[str]:
    """The archive's own most frequent longer words, one query each (so every query hits)."""
    counts: dict[str, int] = {}
    for b in wh.batch_ids("chunks"):
        for text in wh.read_table("chunks", b)["text"].to_list():
            for w in text.lower().split():
                w = w.strip(".,?!;:'\"")
                if len(w) > 4:
                    counts[w] = counts.get(w, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))[:N_QUERIES]


def ensure_scores(wh: Warehouse) -> str:
    """'real' when the warehouse has segment_quality, else 'written' (deterministic scores)."""
    if wh.batch_ids("segment_quality"):
        return "real"
    sys.path.insert(0, str(ROOT))
    from tests.quality_rows import write_quality

    def score(s):
        h = int(hashlib.sha256(f"{s['media_id']}:{s['segment_id']}".encode()).hexdigest()[:8], 16)
        return 1.5 + 3.0 * (h / 0xFFFFFFFF), []

    for batch in wh.batch_ids("segments"):
        write_quality(wh, batch, score, floor=FLOOR)
    return "written"


def timed(fn, repeats: int, pairs: list) -> None:
    for _ in range(repeats):
        for name, call in pairs:
            started = time.perf_counter()
            call()
            fn.setdefault(name, []).append(time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", required=True, help="a processed local warehouse (copied; never written)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--mode", choices=("text", "hybrid"), default="text")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="min-quality-"))
    shutil.copytree(args.warehouse, tmp / "wh", symlinks=True)
    wh = Warehouse(str(tmp / "wh"))
    scores = ensure_scores(wh)
    backend = open_search_backend(wh)
    model = settings.text_embedding_model()
    embed = query_embedder(model) if args.mode == "hybrid" else None
    if embed is not None:
        embed("warm up")
    times: dict[str, list[float]] = {}
    asked = queries(wh)

    def run_search(floor):
        left = 0
        for q in asked:
            left += search(
                wh, backend, q, model=model, embed=embed, mode=args.mode, limit=10, min_quality=floor
            ).left_out
        return left

    left_out = run_search(FLOOR)
    timed(
        times,
        args.repeats,
        [("search", lambda: run_search(None)), ("search --min-quality", lambda: run_search(FLOOR))],
    )
    batches = wh.batch_ids("segments")

    def export(floor):
        for b in batches:
            src = gather(wh, b, quality=floor is not None)
            media = src.media["media_id"].to_list() if src.media.height else []
            for m in media:
                documents(src, m, min_quality=floor)

    timed(
        times,
        max(3, args.repeats // 4),
        [("export", lambda: export(None)), ("export --min-quality", lambda: export(FLOOR))],
    )
    timed(times, max(3, args.repeats // 4), [("query quality", lambda: needs_attention(wh))])
    att = needs_attention(wh)
    n_segments = pl.concat([wh.read_table("segments", b) for b in batches]).height
    print(f"warehouse: {args.warehouse} (copied), {len(batches)} batch(es), {n_segments} segments; scores: {scores}")
    print(f"search: {args.mode}, {len(asked)} queries per call, floor {FLOOR}: {left_out} passages left out in all")
    print(f"query quality: {att.files.height} file(s), {att.segments.height} segment(s) listed")
    print(f"{'call':24s} {'best s':>9s} {'median s':>9s} {'x plain':>8s}")
    for name, values in times.items():
        base = times.get(name.split(" --")[0])
        ratio = statistics.median(values) / statistics.median(base) if base and " --" in name else None
        print(
            f"{name:24s} {min(values):9.4f} {statistics.median(values):9.4f} {'' if ratio is None else f'{ratio:8.2f}'}"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

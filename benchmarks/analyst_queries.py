"""Analysts' questions at N hours of archive: the README's old queries against the query layer.

1. **A synthetic warehouse written with the project's own writers.** Per batch (20 hours):
   ``media``, ``transcripts``, ``segments``, ``words`` (~9,000 words per hour),
   ``speaker_turns`` and ``speaker_embeddings`` through ``Warehouse.write_table``, ~80 local
   speakers per batch drawn from a pool of voices (some far more frequent than others), and
   ``speaker_clusters`` by ``speakers.runs.cluster_archive(mode="incremental")`` after every
   batch, as the pipeline does; a few voices named with ``speakers.edits.name_speaker``.
   Cached under ``benchmarks/results/warehouse-<hours>h/`` (a second run reuses it).
2. **Each question, cold and warm, old route and new, in the same run.** Every (question,
   route) runs in a fresh Python process: *cold* is its first run after the warehouse's
   files were evicted from the page cache (``posix_fadvise(DONTNEED)``), *warm* the best of
   three more. Peak memory is the process's peak RSS above what it held before the query.

    .venv/bin/python benchmarks/analyst_queries.py                 # 100 hours
    .venv/bin/python benchmarks/analyst_queries.py --hours 100 1000 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentranscribe_pipeline.schemas import (  # noqa: E402
    EMBEDDING_DIM,
    Media,
    Segments,
    SpeakerEmbeddings,
    SpeakerTurns,
    Transcripts,
    Words,
    conform,
    utc_now,
)
from opentranscribe_pipeline.storage import Warehouse  # noqa: E402
from opentranscribe_pipeline.storage.media_index import MediaIndex  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "bench-voices/1"
LANGUAGES = (["en"] * 14) + ["de", "de", "fr", "es", "it", "nl"]
FORMAT = 3  # bump when the generated warehouse changes: a cached one of another format is rebuilt


# -- the synthetic archive ---------------------------------------------------------------------
def vocabulary(rng: np.random.Generator, size: int = 4000) -> np.ndarray:
    syllables = ["ka", "lo", "mi", "ne", "ra", "to", "su", "vi", "de", "po", "an", "el", "in", "or", "us", "ty"]
    common = [
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "that",
        "is",
        "was",
        "he",
        "for",
        "it",
        "with",
        "as",
        "his",
        "on",
        "be",
        "at",
        "by",
        "i",
        "this",
        "had",
        "not",
        "are",
        "but",
        "from",
    ]
    made = {"".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(size * 3)}
    words = common + ["library", "archive", "budget"] + sorted(made)[: size - len(common) - 3]
    return np.array(words, dtype=object)


class Voices:
    """A pool of synthetic voices: well-separated unit centres; popularity is skewed (a few
    hosts speak in many files, most voices in a few)."""

    def __init__(self, n: int, seed: int = 7):
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        w = 1.0 / (np.arange(n) + 20.0)
        self.weights = w / w.sum()

    def pick(self, rng: np.random.Generator, k: int) -> np.ndarray:
        return rng.choice(len(self.centres), size=k, replace=False, p=self.weights)

    def embed(self, rng: np.random.Generator, voices: np.ndarray) -> np.ndarray:
        v = self.centres[voices] + 0.015 * rng.standard_normal((len(voices), EMBEDDING_DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def media_id_of(batch: int, i: int) -> str:
    return hashlib.sha256(f"bench media {batch} {i}".encode()).hexdigest()


def batch_id_of(batch: int) -> str:
    return f"bench-{batch:05d}"


def make_file(rng, vocab, media_id, batch_id, duration_s, words_per_hour, local_voices):
    """Words, segments, turns and per-speaker speech of one synthetic recording."""
    n_spk = len(local_voices)
    # turns: exponential lengths (mean 20 s), speakers never twice in a row
    lengths = rng.exponential(20.0, int(duration_s / 20 * 2) + 8) + 1.0
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    keep = starts < duration_s
    starts, ends = starts[keep], np.minimum(starts[keep] + lengths[keep], duration_s)
    who = np.empty(len(starts), np.int64)
    who[0] = 0
    steps = rng.integers(1, max(n_spk, 2), len(starts))
    for k in range(1, len(starts)):
        who[k] = (who[k - 1] + steps[k]) % n_spk
    who[: min(n_spk, len(who))] = np.arange(min(n_spk, len(who)))  # every local speaker speaks
    labels = np.array([f"SPEAKER_{k:02d}" for k in range(n_spk)], dtype=object)
    # words: uniform in time, speaker = the turn holding the word's start
    n = max(1, int(rng.normal(words_per_hour, words_per_hour * 0.05) * duration_s / 3600))
    t = np.sort(rng.uniform(0, duration_s - 0.4, n))
    turn = np.searchsorted(starts, t, side="right") - 1
    new_turn = np.concatenate([[True], turn[1:] != turn[:-1]])
    turn_start_idx = np.maximum.accumulate(np.where(new_turn, np.arange(n), 0))
    pos = np.arange(n) - turn_start_idx
    seg_break = new_turn | (pos % 15 == 0)
    segment_id = np.cumsum(seg_break) - 1
    seg_start_idx = np.maximum.accumulate(np.where(seg_break, np.arange(n), 0))
    word_index = np.arange(n) - seg_start_idx
    ranks = np.minimum(rng.zipf(1.3, n) - 1, len(vocab) - 1)
    words = pl.DataFrame(
        {
            "batch_id": batch_id,
            "media_id": media_id,
            "segment_id": segment_id.astype(np.int32),
            "word_index": word_index.astype(np.int32),
            "word": vocab[ranks].tolist(),
            "start_s": t,
            "end_s": t + 0.3,
            "score": rng.uniform(0.5, 1.0, n),
            "speaker": labels[who[turn]].tolist(),
            "speaker_overlap": np.ones(n),
            "timing_source": "cross_attention",
        }
    )
    segments = (
        words.group_by("segment_id", maintain_order=True)
        .agg(
            start_s=pl.col("start_s").min(),
            end_s=pl.col("end_s").max(),
            text=pl.col("word").str.join(" "),
            speaker=pl.col("speaker").first(),
        )
        .with_columns(batch_id=pl.lit(batch_id), media_id=pl.lit(media_id), language=pl.lit(None, pl.Utf8))
    )
    turns = pl.DataFrame(
        {"batch_id": batch_id, "media_id": media_id, "start_s": starts, "end_s": ends, "speaker": labels[who].tolist()}
    )
    talk = np.bincount(who, weights=ends - starts, minlength=n_spk)
    return words, segments, turns, labels, talk


def write_batch(wh: Warehouse, b: int, voices: Voices, vocab, *, hours_per_batch, file_h, words_per_hour, speakers):
    rng = np.random.default_rng(1000 + b)
    batch_id = batch_id_of(b)
    n_files = max(1, round(hours_per_batch / file_h))
    per_file = max(1, round(speakers / n_files))
    now = utc_now()
    media, transcripts, words, segments, turns, emb = [], [], [], [], [], []
    for i in range(n_files):
        media_id = media_id_of(b, i)
        duration = file_h * 3600 * rng.uniform(0.9, 1.1)
        language = LANGUAGES[rng.integers(len(LANGUAGES))]
        local = voices.pick(rng, per_file)
        w, s, t, labels, talk = make_file(rng, vocab, media_id, batch_id, duration, words_per_hour, local)
        s = s.with_columns(language=pl.lit(language))
        words.append(w)
        segments.append(s)
        turns.append(t)
        media.append(
            {
                "batch_id": batch_id,
                "media_id": media_id,
                "source_uri": f"s3://archive/incoming/drop-{b // 10:04d}/meeting {b:05d}-{i:02d}.flac",
                "size_bytes": int(duration * 32000),
                "duration_s": duration,
                "status": "ok",
                "container": "flac",
                "audio_codec": "flac",
                "sample_rate": 16000,
                "channels": 1,
                "ingest_version": "bench",
                "processed_at": now,
            }
        )
        transcripts.append(
            {
                "batch_id": batch_id,
                "media_id": media_id,
                "status": "ok",
                "language": language,
                "language_probability": 0.95,
                "n_segments": s.height,
                "n_words": w.height,
                "audio_s": duration,
                "elapsed_s": duration / 50,
                "asr_model": "bench",
                "model_version": "bench",
                "timing_method": "cross_attention",
                "processed_at": now,
            }
        )
        emb.append(
            pl.DataFrame(
                {
                    "batch_id": batch_id,
                    "media_id": media_id,
                    "speaker": labels.tolist(),
                    "embedding": pl.Series(voices.embed(rng, local), dtype=pl.Array(pl.Float32, EMBEDDING_DIM)),
                    "speech_s": talk * 0.93,  # speech alone: overlapped speech left out
                    "model": MODEL,
                }
            )
        )
    wh.write_table("media", conform(pl.DataFrame(media), Media), batch_id)
    wh.write_table("transcripts", conform(pl.DataFrame(transcripts), Transcripts), batch_id)
    wh.write_table("words", conform(pl.concat(words), Words), batch_id)
    wh.write_table("segments", conform(pl.concat(segments), Segments), batch_id)
    wh.write_table("speaker_turns", conform(pl.concat(turns), SpeakerTurns), batch_id)
    wh.write_table("speaker_embeddings", conform(pl.concat(emb), SpeakerEmbeddings), batch_id)
    return batch_id


def cluster_batch(wh: Warehouse, batch_id: str) -> None:
    from opentranscribe_pipeline.speakers.cluster import ClusterParams
    from opentranscribe_pipeline.speakers.runs import cluster_archive

    cluster_archive(
        wh,
        mode="incremental",
        model=MODEL,
        params=ClusterParams(),
        accept_threshold=0.78,
        suggest_threshold=0.70,
        batch_ids=[batch_id],
    )


def name_voices(wh: Warehouse, names: dict[int, str], voices: Voices) -> dict[str, str]:
    """Name the global ids holding these voices (by centroid similarity); returns id -> name."""
    from opentranscribe_pipeline.speakers.edits import name_speaker
    from opentranscribe_pipeline.speakers.state import CENTROIDS, SpeakerState

    st = SpeakerState(wh)
    cents = st.read(st.current(), CENTROIDS).filter(pl.col("status") == "active")
    vectors = cents["centroid"].to_numpy()
    out = {}
    for voice, name in names.items():
        gid = cents["global_speaker_id"][int(np.argmax(vectors @ voices.centres[voice]))]
        out[name_speaker(wh, gid, name)] = name
    return out


def build_archive(
    wh: Warehouse,
    hours: float,
    *,
    hours_per_batch: float = 20,
    file_h: float = 1.0,
    words_per_hour: int = 9000,
    speakers_per_batch: int = 80,
    n_voices: int | None = None,
    names: dict[int, str] | None = None,
    progress: bool = False,
) -> dict:
    """Write the synthetic archive into ``wh``; returns what it holds (batches, ids, names)."""
    n_batches = max(1, round(hours / hours_per_batch))
    voices = Voices(n_voices or max(60, int(hours / 5)))
    vocab = vocabulary(np.random.default_rng(3))
    t0 = time.perf_counter()
    batch_ids = []
    for b in range(n_batches):
        batch_ids.append(
            write_batch(
                wh,
                b,
                voices,
                vocab,
                hours_per_batch=hours_per_batch,
                file_h=file_h,
                words_per_hour=words_per_hour,
                speakers=speakers_per_batch,
            )
        )
        cluster_batch(wh, batch_ids[-1])
        if progress:
            done = b + 1
            el = time.perf_counter() - t0
            eta = el / done * (n_batches - done)
            bar = "#" * int(30 * done / n_batches)
            print(f"\r  [{bar:30s}] batch {done}/{n_batches}  {el:6.0f} s, ~{eta:4.0f} s left", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    MediaIndex(wh).ensure_built()  # the archive-wide media index, as ingest keeps it
    named = name_voices(wh, names or {0: "Ada Lovelace", 1: "Grace Hopper", 40: "Alan Turing"}, voices)
    return {
        "hours": hours,
        "batches": n_batches,
        "voices": len(voices.centres),
        "named": named,
        "generate_s": round(time.perf_counter() - t0, 1),
    }


def cached_archive(hours: float) -> tuple[Path, dict]:
    """The cached warehouse of ``hours`` (built on first use)."""
    root = RESULTS / f"warehouse-{hours:g}h"
    info_path = root / "_bench.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("format") == FORMAT:
            MediaIndex(Warehouse(str(root))).ensure_built()  # a warehouse cached before the index was built
            return root, info
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    print(f"generating {hours:g} hours into {root} ...", file=sys.stderr)
    info = build_archive(Warehouse(str(root)), hours, progress=True)
    info["format"] = FORMAT
    info["bytes"] = sum(f.stat().st_size for f in root.rglob("*.parquet"))
    info_path.write_text(json.dumps(info, indent=1))
    return root, info


# -- the questions -------------------------------------------------------------------------------
def pick_media(root: Path) -> tuple[str, str]:
    """A media item in the middle of the archive: (media_id, file name)."""
    n = len(list((root / "media").glob("batch_id=*")))
    df = pl.read_parquet(root / "media" / f"batch_id={batch_id_of(n // 2)}" / "part-0.parquet")
    return df["media_id"][3], df["source_uri"][3].rsplit("/", 1)[-1]


OLD = {
    # the README's queries, as a new user runs them
    "words_polars": """
words = pl.scan_parquet(f"{R}/words/**/*.parquet", hive_partitioning=True)
clusters = pl.scan_parquet(f"{R}/speaker_clusters/*.parquet")
profiles = pl.scan_parquet(f"{R}/speaker_profiles/*.parquet")
out = (words.join(clusters.select("media_id", "speaker", "global_speaker_id"), on=["media_id", "speaker"])
       .join(profiles.select("global_speaker_id", "name"), on="global_speaker_id")
       .filter(pl.col("name") == SPEAKER).collect())""",
    "words_duckdb": """
out = duckdb.sql(f'''SELECT w.*, c.global_speaker_id FROM read_parquet('{R}/words/*/*.parquet') w
  JOIN read_parquet('{R}/speaker_clusters/*.parquet') c USING (media_id, speaker)
  JOIN read_parquet('{R}/speaker_profiles/*.parquet') p USING (global_speaker_id)
  WHERE p.name = '{SPEAKER}' ''').pl()""",
    "transcript_polars": """
segments = pl.scan_parquet(f"{R}/segments/**/*.parquet", hive_partitioning=True)
clusters = pl.scan_parquet(f"{R}/speaker_clusters/*.parquet")
out = (segments.filter(pl.col("media_id") == MEDIA_ID)
       .join(clusters.select("media_id", "speaker", "global_speaker_id"), on=["media_id", "speaker"], how="left")
       .sort("segment_id").collect())""",
    "transcript_duckdb": """
out = duckdb.sql(f'''SELECT s.*, c.global_speaker_id FROM read_parquet('{R}/segments/*/*.parquet') s
  LEFT JOIN read_parquet('{R}/speaker_clusters/*.parquet') c USING (media_id, speaker)
  WHERE s.media_id = '{MEDIA_ID}' ORDER BY segment_id''').pl()""",
    "talk_time_polars": """
turns = pl.scan_parquet(f"{R}/speaker_turns/**/*.parquet", hive_partitioning=True)
clusters = pl.scan_parquet(f"{R}/speaker_clusters/*.parquet")
out = (turns.join(clusters.select("media_id", "speaker", "global_speaker_id"), on=["media_id", "speaker"])
       .group_by("global_speaker_id").agg(talk_s=(pl.col("end_s") - pl.col("start_s")).sum())
       .sort("talk_s", descending=True).collect())""",
    "per_language_polars": """
words = pl.scan_parquet(f"{R}/words/**/*.parquet", hive_partitioning=True)
transcripts = pl.scan_parquet(f"{R}/transcripts/**/*.parquet", hive_partitioning=True)
out = (words.join(transcripts.select("media_id", "language"), on="media_id")
       .group_by("language").agg(n_words=pl.len()).collect())""",
    "show": """
from opentranscribe_pipeline.schemas import TABLES
from opentranscribe_pipeline.speakers.state import read_archive_table
out = {t: (0 if (f := read_archive_table(WH, t)) is None else f.height) for t in TABLES}""",
}
NEW = {
    "words": "out = q.words(WH, SPEAKER).collect()",
    "transcript_by_id": "out = q.transcript(WH, MEDIA_ID).collect()",
    "transcript_by_name": "out = q.transcript(WH, FILE_NAME).collect()",
    "talk_time": "out = q.talk_time(WH).collect()",
    "talk_time_embeddings": "out = q.talk_time(WH, source='embeddings').collect()",
    "per_language": "out = q.words_per_language(WH).collect()",
    "counts": "out = q.counts(WH)",
}
QUESTIONS = [  # (question, old routes, new routes)
    ("every word one global speaker said", ["words_polars", "words_duckdb"], ["words"]),
    (
        "one media item's transcript",
        ["transcript_polars", "transcript_duckdb"],
        ["transcript_by_id", "transcript_by_name"],
    ),
    ("talk time per global speaker", ["talk_time_polars"], ["talk_time", "talk_time_embeddings"]),
    ("words per language", ["per_language_polars"], ["per_language"]),
    ("`show`: rows per table", ["show"], ["counts"]),
]

RUNNER = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import duckdb, polars as pl
import opentranscribe_pipeline.query as q
from opentranscribe_pipeline.storage import Warehouse
R, SPEAKER, MEDIA_ID, FILE_NAME = {r!r}, {speaker!r}, {media_id!r}, {file_name!r}
WH = Warehouse(R)
code = {code!r}
def size(out):
    return len(out) if isinstance(out, dict) else out.height
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); exec(code); cold = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = size(out)
warm = []
for _ in range(3):
    t = time.perf_counter(); exec(code); warm.append(time.perf_counter() - t)
print(json.dumps({{"cold_s": cold, "warm_s": min(warm), "rows": rows, "mem_mb": (peak - before) / 1024,
                  "rss_mb": peak / 1024}}))
"""


def evict(root: Path) -> None:
    """Drop the warehouse's files from the page cache (no root needed)."""
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run_route(root: Path, code: str, speaker: str, media_id: str, file_name: str) -> dict:
    evict(root)
    script = RUNNER.format(
        root=str(ROOT), r=str(root), speaker=speaker, media_id=media_id, file_name=file_name, code=code
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speaker_span(root: Path, name: str) -> tuple[int, int]:
    """(batches, media) holding the named speaker: what the new route reads."""
    import opentranscribe_pipeline.query as q

    wh = Warehouse(str(root))
    gid, _ = q.resolve_speaker(wh, name)
    where = q.speaker_locations(wh, [gid])
    return where["batch_id"].n_unique(), where["media_id"].n_unique()


def bench(hours: float, speaker: str) -> list[dict]:
    root, info = cached_archive(hours)
    media_id, file_name = pick_media(root)
    n_batches, n_media = speaker_span(root, speaker)
    print(
        f"\n## {hours:g} hours: {info['batches']} batches, {info['voices']} voices, "
        f"{info['bytes'] / 1e9:.2f} GB of Parquet (generated in {info['generate_s']:.0f} s); "
        f"{speaker!r} speaks in {n_media} files of {n_batches} batches\n"
    )
    print("| question | route | cold s | warm s | peak MB | rows |")
    print("|---|---|---:|---:|---:|---:|")
    rows = []
    for question, olds, news in QUESTIONS:
        found = {}
        for label, code in [(o, OLD[o]) for o in olds] + [(n, NEW[n]) for n in news]:
            r = run_route(root, code, speaker, media_id, file_name)
            found[label] = r
            side = "old" if label in olds else "new"
            if "error" in r:
                print(f"| {question} | {side}: `{label}` | error: {r['error'][:80]} | | | |")
                continue
            print(
                f"| {question} | {side}: `{label}` | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['mem_mb']:.0f} | {r['rows']:,} |"
            )
            rows.append({"hours": hours, "question": question, "route": label, "side": side, **r})
        ok = [found[o] for o in olds if "error" not in found[o]]
        best_old_cold = min(r["cold_s"] for r in ok) if ok else None
        best_old_warm = min(r["warm_s"] for r in ok) if ok else None
        for n in news:
            r = found[n]
            if "error" not in r and best_old_cold:
                print(
                    f"|  | ratio best old / `{n}` | {best_old_cold / r['cold_s']:.1f}x | {best_old_warm / r['warm_s']:.1f}x | | |"
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[100])
    ap.add_argument("--speaker", default="Alan Turing", help="the named speaker whose words are asked for")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    print(f"# analyst_queries: {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    all_rows = []
    for hours in args.hours:
        all_rows.extend(bench(hours, args.speaker))
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))
    print(f"\npeak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

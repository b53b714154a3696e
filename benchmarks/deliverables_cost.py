"""What the deliverables cost per audio hour, beside transcription measured in the same run.

One batch of the espeak-ng French/German/Spanish dialogues (tests/data/translation) plus two
English sample dialogues, processed by the real assets step by step with one model
(``--model``, default ``packaged:base``, multilingual, so translation really runs):

- ``transcribe`` (the baseline: WhisperX ASR + word timings), ``translate`` (Whisper's
  translate task on the non-English files; English ones are copied), ``conversation_analytics``
  (speaker_stats + media_stats), ``exports`` (SRT/WebVTT/TXT/JSON for every file), each as a
  Dagster step (wall seconds of its ``materialize``, Dagster overhead included);
- the Dagster-free cores alone, repeated ``--repeat`` times: ``batch_stats`` and rendering
  every file's four documents (``deliver.documents``).

Printed: seconds per audio hour and the ratio to transcription. The machine may be shared:
absolute numbers are noisy, ratios measured in one run less so.

    .venv/bin/python benchmarks/deliverables_cost.py [--model packaged:base] [--repeat 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

FOREIGN = ROOT / "tests" / "data" / "translation"
SAMPLE = ROOT / "tests" / "data" / "sample_archive" / "drop-2026-11-24"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    import dagster as dg
    import polars as pl

    from opentranscribe_pipeline.assets import attribute_speakers, cluster_speakers, diarize, ingest, transcribe
    from opentranscribe_pipeline.assets.clustering import clustering_run_config
    from opentranscribe_pipeline.assets.exports import exports
    from opentranscribe_pipeline.assets.stats import batch_stats, conversation_analytics
    from opentranscribe_pipeline.assets.translation import translate
    from opentranscribe_pipeline.deliver.documents import documents, gather
    from opentranscribe_pipeline.deliver.selection import exported_media
    from opentranscribe_pipeline.drops.batches import register_drop
    from opentranscribe_pipeline.resources import (
        AsrModelResource,
        DiarizationModelResource,
        SpeakerClusteringResource,
        TranslationModelResource,
        WarehouseResource,
    )
    from opentranscribe_pipeline.resources.deliver import ExportsResource
    from opentranscribe_pipeline.storage import Warehouse

    with tempfile.TemporaryDirectory() as tmp:
        drop = Path(tmp) / "bench"
        drop.mkdir()
        for name in ("fr.flac", "de.flac", "es.flac"):
            shutil.copy(FOREIGN / name, drop / name)
        for name in ("interview 01.wav", "call-07.flac"):
            shutil.copy(SAMPLE / name, drop / name)
        root = Path(tmp) / "wh"
        wh = Warehouse(str(root))
        [batch] = register_drop(wh, str(drop)).new_batch_ids
        resources = {
            "warehouse": WarehouseResource(root=str(root)),
            "asr": AsrModelResource(model=args.model),
            "diarization": DiarizationModelResource(),
            "translation": TranslationModelResource(model=args.model),
            "clustering": SpeakerClusteringResource(),
            "exports_config": ExportsResource(),
        }
        timings: dict[str, float] = {}
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("batches", [batch])

            def step(name, assets, **kw):
                t0 = time.perf_counter()
                result = dg.materialize(assets, instance=instance, resources=resources, **kw)
                assert result.success, name
                timings[name] = time.perf_counter() - t0

            step("ingest", [ingest], partition_key=batch)
            step("transcribe", [transcribe], partition_key=batch, selection=[transcribe])
            step("diarize", [diarize], partition_key=batch)
            step("attribute_speakers", [attribute_speakers], partition_key=batch)
            step("translate", [translate], partition_key=batch)
            step("conversation_analytics", [conversation_analytics], partition_key=batch)
            step("cluster_speakers", [cluster_speakers], run_config=clustering_run_config("incremental", [batch]))
            step("exports", [exports], partition_key=batch)

        audio_h = float(wh.read_table("audio", batch)["duration_s"].sum()) / 3600
        state = wh.read_table("translations", batch)
        foreign_h = float(state.filter(pl.col("n_translated") > 0)["audio_s"].sum()) / 3600

        tables = {
            t: wh.read_table(t, batch) for t in ("media", "audio", "speaker_turns", "words", "segments", "diarization")
        }
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            batch_stats(
                batch, *(tables[t] for t in ("media", "audio", "speaker_turns", "words", "segments", "diarization"))
            )
        stats_core = (time.perf_counter() - t0) / args.repeat
        src = gather(wh, batch)
        ids = exported_media(src)
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            for m in ids:
                documents(src, m)
        render_core = (time.perf_counter() - t0) / args.repeat

    base = timings["transcribe"] / audio_h
    print(
        f"batch: {len(ids)} files, {audio_h * 3600:.1f} s of audio ({foreign_h * 3600:.1f} s non-English), model {args.model}"
    )
    print(f"{'step':34s} {'s per audio hour':>16s} {'x transcription':>16s}")
    rows = [
        ("transcribe (baseline)", timings["transcribe"] / audio_h),
        ("diarize", timings["diarize"] / audio_h),
        ("translate (whole batch)", timings["translate"] / audio_h),
        ("translate (per non-English hour)", timings["translate"] / foreign_h if foreign_h else 0.0),
        ("conversation_analytics step", timings["conversation_analytics"] / audio_h),
        ("exports step (4 formats)", timings["exports"] / audio_h),
        ("batch_stats core (no Dagster)", stats_core / audio_h),
        ("render 4 documents core", render_core / audio_h),
    ]
    for name, per_h in rows:
        print(f"{name:34s} {per_h:16.1f} {per_h / base:16.4f}")
    print("(wall seconds of each step's materialize, Dagster overhead included; machine may be shared)")


if __name__ == "__main__":
    main()

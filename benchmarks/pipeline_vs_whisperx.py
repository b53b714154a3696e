"""Pipeline vs bare WhisperX on the sample archive: wall time ratio, WER of both, DER, steps.

Both sides use the same model directory, device, compute type, batch size and VAD, over the
same files, measured in this one run:

- baseline: what WhisperX's CLI does per archive: load the model once, then for each file
  load the audio and ``model.transcribe`` it. (whisperx.load_audio shells out to an ffmpeg
  binary this machine does not have, so the baseline decodes with PyAV, as the pipeline does.)
- pipeline: ``opentranscribe process`` on the same folder into a fresh warehouse and a fresh
  DAGSTER_HOME: registration, hashing, probing, FLAC writing, word timings, Parquet, checks
  and the Dagster run bookkeeping all included.

Each side runs in its own fresh Python process, so both pay the same import costs. The
pipeline's time is also broken down per Dagster step (from the run's step events, each step
its own process), and its speaker turns are scored against the truth (DER, collar 0.25 s).

    .venv/bin/python benchmarks/pipeline_vs_whisperx.py [--model packaged:base] [--source DIR] [--copies N]

``--copies N`` processes the sample archive N times over (N - 1 FLAC copies of every file, each
with its own comment tag so the pipeline's duplicate check does not skip it): the fixed costs of
a run (Dagster's bookkeeping, the forkserver's imports, model loads) then weigh what they weigh
in an archive batch rather than in 130 s of audio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_archive"

BASELINE = r"""
import json, sys, time, os
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
import whisperx
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.models import resolve_asr_model
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
m = resolve_asr_model(args["model"])
model = whisperx.load_model(m.path, "cpu", compute_type=args["compute_type"], vad_method="pyannote",
                            asr_options={"beam_size": 5}, local_files_only=True)
out = {}
for path in args["files"]:
    audio = decode(path).samples
    lang = None if model.model.model.is_multilingual else "en"
    result = model.transcribe(audio, batch_size=args["batch_size"], language=lang)
    out[path] = " ".join(s["text"].strip() for s in result["segments"])
print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": out}))
"""


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    norm = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return jiwer.wer(" ".join(refs), " ".join(hyps), reference_transform=norm, hypothesis_transform=norm)


def step_seconds(home: Path) -> dict[str, float]:
    """Seconds per step of every run the pipeline's CLI recorded in ``home``'s instance."""
    import dagster as dg

    out: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for stat in instance.get_run_step_stats(run.run_id):
                if stat.start_time and stat.end_time:
                    out[stat.step_key] = out.get(stat.step_key, 0.0) + stat.end_time - stat.start_time
    return out


def der(truth: dict, turns) -> float:
    """DER of the pipeline's turns against the truth's (keyed by source path), over the files
    that have both."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.25)
    for key, value in truth.items():
        hyp_rows = turns.filter(turns["source_uri"] == key)
        if not value.get("turns") or hyp_rows.is_empty():
            continue
        ref, hyp = Annotation(), Annotation()
        for t in value["turns"]:
            ref[Segment(t["start_s"], t["end_s"])] = t["speaker"]
        for row in hyp_rows.iter_rows(named=True):
            hyp[Segment(row["start_s"], row["end_s"])] = row["speaker"]
        metric(ref, hyp)
    return abs(metric)


def with_copies(source: Path, copies: int, into: Path) -> list[Path]:
    """The files of ``source`` plus ``copies - 1`` FLAC copies of each (same audio, decoded by
    the pipeline's decoder; a comment tag makes every copy's bytes differ)."""
    import soundfile as sf

    from opentranscribe_pipeline.speech.decode import SAMPLE_RATE, decode

    originals = sorted(p for p in source.iterdir() if p.is_file())
    if copies <= 1:
        return originals
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for path in originals:
        out.append(path)
        audio = decode(path)
        for i in range(1, copies):
            target = into / f"{path.stem} copy {i}.flac"
            with sf.SoundFile(target, "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC") as f:
                f.comment = f"benchmark copy {i} of {path.name}"
                f.write(audio.samples)
            out.append(target)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--source", default=str(SAMPLE / "drop-2026-11-24"))
    ap.add_argument("--copies", type=int, default=1, help="process every file this many times (copies)")
    args = ap.parse_args()
    sample_truth = {str(SAMPLE / k): v for k, v in json.loads((SAMPLE / "truth.json").read_text()).items()}
    by_stem = {Path(k).stem: v for k, v in sample_truth.items() if Path(k).parent == Path(args.source)}
    work = tempfile.TemporaryDirectory()
    source = Path(args.source)
    if args.copies > 1:  # one folder: the originals (copied: the pipeline reads no links) and the copies
        drop = Path(work.name) / "drop"
        for p in with_copies(source, args.copies, drop):
            if p.parent == source:
                shutil.copy2(p, drop / p.name)
        source = drop
    files = sorted(str(p) for p in source.iterdir() if p.is_file())
    truth = {f: by_stem[Path(f).stem.split(" copy ")[0]] for f in files if Path(f).stem.split(" copy ")[0] in by_stem}
    refs = {k: v["text"] for k, v in truth.items()}
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0"}

    # baseline
    payload = json.dumps(
        {"model": args.model, "compute_type": args.compute_type, "batch_size": args.batch_size, "files": files}
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BASELINE, payload], cwd=ROOT, env=env, capture_output=True, text=True)
    base_wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    base = json.loads(proc.stdout.strip().splitlines()[-1])

    # pipeline
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        warehouse = Path(tmp) / "warehouse"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "opentranscribe_pipeline.cli",
                "process",
                str(source),
                "--warehouse",
                str(warehouse),
                "--model",
                args.model,
                "--compute-type",
                args.compute_type,
                "--batch-size",
                str(args.batch_size),
            ],
            cwd=ROOT,
            env={**env, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
        )
        pipe_wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        import polars as pl

        segments = pl.read_parquet(warehouse / "segments" / "**" / "*.parquet", hive_partitioning=True)
        media = pl.read_parquet(warehouse / "media" / "**" / "*.parquet", hive_partitioning=True)
        texts = (
            segments.sort("media_id", "segment_id")
            .group_by("media_id", maintain_order=True)
            .agg(pl.col("text").str.join(" "))
            .join(media.filter(pl.col("status") == "ok").select("media_id", "source_uri"), on="media_id")
        )
        pipe_texts = dict(zip(texts["source_uri"], texts["text"]))
        audio_s = float(media["duration_s"].sum())
        turns = pl.read_parquet(warehouse / "speaker_turns" / "**" / "*.parquet", hive_partitioning=True).join(
            media.select("media_id", "source_uri"), on="media_id"
        )
        steps = step_seconds(home)

    keys = [f for f in files if f in refs]
    base_wer = wer([refs[k] for k in keys], [base["texts"].get(k, "") for k in keys])
    pipe_wer = wer([refs[k] for k in keys], [pipe_texts.get(k, "") for k in keys])
    print(
        f"files: {len(files)}, audio: {audio_s:.1f} s, model: {args.model}, compute_type: {args.compute_type}, "
        f"batch_size: {args.batch_size}, cpu threads: {os.cpu_count()}"
    )
    print(f"{'':28s}{'wall s':>10s}{'x real time':>13s}{'WER':>8s}")
    print(f"{'bare whisperx (process)':28s}{base_wall:10.1f}{audio_s / base_wall:13.2f}{base_wer:8.3f}")
    print(f"{'  of which in-script':28s}{base['wall_s']:10.1f}")
    print(f"{'opentranscribe pipeline':28s}{pipe_wall:10.1f}{audio_s / pipe_wall:13.2f}{pipe_wer:8.3f}")
    print(f"wall-time ratio pipeline / whisperx: {pipe_wall / base_wall:.2f}")
    print(f"DER of the pipeline's speaker turns (collar 0.25 s): {der(truth, turns):.4f}")
    print("pipeline steps (Dagster step times, each its own process; ratio to the whole bare whisperx run):")
    for key, secs in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:34s}{secs:8.1f} s{secs / base_wall:8.2f}")
    print(f"  {'(sum of steps)':34s}{sum(steps.values()):8.1f} s{sum(steps.values()) / base_wall:8.2f}")
    print(
        f"WER pipeline - whisperx: {pipe_wer - base_wer:+.3f} ({'no worse' if pipe_wer <= base_wer + 1e-9 else 'WORSE'})"
    )
    return 0 if pipe_wer <= base_wer + 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

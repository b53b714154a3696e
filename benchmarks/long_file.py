"""Long files: real-time factor per step and peak memory, against 5-minute files, in one run.

A long recording is built from the sample archive's dialogues (decoded, concatenated in turn
with 1 s of silence between them, repeated up to the length asked for), written as FLAC the
way the pipeline stores it. Each step then runs on its own in a fresh Python process, loading
its model as the pipeline's step does, and reports:

- ``load s``: model load; ``step s``: the step's work on the file (what the RTF counts);
- ``RTF``: step seconds per audio second, and its ratio to the shortest duration's RTF
  (the issue's goal: within 1.20 for a 2-hour file against 5-minute ones);
- ``peak RSS``: the child's own ``ru_maxrss``, and the peak after each phase
  (``VmHWM`` of /proc/self/status) to show *where* memory grows: after the model load,
  after decoding, after the step.

    .venv/bin/python benchmarks/long_file.py [--minutes 5 30 120] [--steps decode transcribe diarize]
        [--model packaged:base] [--threads 0]

Steps: ``whisperx`` (the baseline: bare ``whisperx.load_model(...).transcribe``, its own VAD,
no word timings, as WhisperX's CLI runs a file), then the pipeline's in its order: ``decode`` (FLAC bytes -> 16 kHz float32, as every model step
starts), ``diarize`` (pyannote with the packaged parts, ``Diarizer``, voices included; it
leaves the file's speech activity beside the FLAC, as the pipeline's step does), ``transcribe``
(WhisperX with word timings, ``Transcriber``, using that activity as its VAD when ``diarize``
ran before it, so ``--steps decode transcribe`` measures WhisperX with its own VAD).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_archive" / "drop-2026-11-24"

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
args = json.loads(sys.argv[1])

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

phases = {"start": hwm_mb()}
step = args["step"]
t0 = time.perf_counter()
if step == "transcribe":
    from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber
    from opentranscribe_pipeline.speech.models import resolve_asr_model
    model = Transcriber(resolve_asr_model(args["model"]), AsrOptions(threads=args["threads"]))
    model.load()
elif step == "diarize":
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer
    model = Diarizer(DiarizationOptions())
    model.load()
elif step == "whisperx":  # the baseline: what WhisperX's CLI runs per file (no word timings)
    import whisperx
    from opentranscribe_pipeline.speech.models import resolve_asr_model
    m = resolve_asr_model(args["model"])
    model = whisperx.load_model(m.path, "cpu", compute_type="int8", vad_method="pyannote",
                                asr_options={"beam_size": 5}, local_files_only=True, threads=args["threads"])
else:
    model = None
load_s = time.perf_counter() - t0
phases["model loaded"] = hwm_mb()
from opentranscribe_pipeline.speech.decode import load_flac
data = open(args["flac"], "rb").read()
t0 = time.perf_counter()
samples = load_flac(data)
decode_s = time.perf_counter() - t0
del data
phases["decoded"] = hwm_mb()
t0 = time.perf_counter()
detail = {}
activity_file = args["flac"] + ".activity.npz"
if step == "transcribe":
    from opentranscribe_pipeline.speech.activity import SpeechActivity
    activity = SpeechActivity.from_bytes(open(activity_file, "rb").read()) if os.path.exists(activity_file) else None
    tx = model.transcribe(samples, activity=activity)
    detail = {"words": tx.n_words, "segments": len(tx.segments), "vad": tx.vad}
elif step == "whisperx":
    lang = None if model.model.model.is_multilingual else "en"
    out = model.transcribe(samples, batch_size=8, language=lang)
    detail = {"segments": len(out["segments"])}
elif step == "diarize":
    result = model.diarize(samples)
    if result.activity is not None:  # as the pipeline's diarization step hands it to transcription
        open(activity_file, "wb").write(result.activity.to_bytes())
    detail = {"speakers": len(result.speakers), "turns": len(result.turns), "voices": len(result.voices)}
step_s = time.perf_counter() - t0 if step != "decode" else decode_s
phases["step done"] = hwm_mb()
import resource
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "load_s": load_s, "decode_s": decode_s, "step_s": step_s, "audio_s": samples.size / 16000,
                  "phases": phases, "detail": detail}))
"""


def build_long_flac(minutes: float, out: Path) -> float:
    """The sample archive's speech, in turn with 1 s gaps, repeated to ``minutes``; FLAC bytes
    at ``out``; returns the duration in seconds."""
    import numpy as np

    from opentranscribe_pipeline.speech.decode import SAMPLE_RATE, decode, encode_flac

    pieces = []
    for path in sorted(SAMPLE.iterdir()):
        try:
            pieces.append(decode(str(path)).samples)
        except Exception:  # noqa: BLE001 - the archive holds deliberately broken files
            continue
    gap = np.zeros(SAMPLE_RATE, np.float32)
    target = int(minutes * 60 * SAMPLE_RATE)
    parts, n, i = [], 0, 0
    while n < target:
        piece = pieces[i % len(pieces)][: target - n]
        parts += [piece, gap]
        n += piece.size + gap.size
        i += 1
    samples = np.concatenate(parts)[:target]
    out.write_bytes(encode_flac(samples))
    return samples.size / SAMPLE_RATE


def run_child(step: str, flac: Path, args) -> dict:
    payload = json.dumps({"step": step, "flac": str(flac), "model": args.model, "threads": args.threads})
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, payload], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{step} on {flac.name} failed")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 30, 120])
    ap.add_argument("--steps", nargs="+", default=["decode", "whisperx", "diarize", "transcribe"])
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 threads (0: its default)")
    args = ap.parse_args()
    print(f"cpu threads: {os.cpu_count()}, model: {args.model}, steps: {' '.join(args.steps)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in sorted(args.minutes):
            flac = Path(tmp) / f"long-{minutes:g}min.flac"
            audio_s = build_long_flac(minutes, flac)
            for step in args.steps:
                r = run_child(step, flac, args)
                r.update(step=step, minutes=minutes, audio_s=audio_s)
                rows.append(r)
                print(
                    f"  {minutes:g} min {step}: step {r['step_s']:.1f} s, RTF {r['step_s'] / audio_s:.4f}, "
                    f"peak {r['peak_mb']:.0f} MB, {r['detail']}",
                    flush=True,
                )
    base = {r["step"]: r for r in rows if r["minutes"] == min(args.minutes)}
    if "whisperx" in args.steps:
        print()
        print("model steps against bare whisperx on the same file (step seconds, model loads excluded):")
        for minutes in sorted(args.minutes):
            of = {r["step"]: r["step_s"] for r in rows if r["minutes"] == minutes}
            ours = sum(of.get(s, 0.0) for s in ("decode", "diarize", "transcribe"))
            parts = ", ".join(f"{s} {of[s] / of['whisperx']:.2f}" for s in ("diarize", "transcribe") if s in of)
            print(
                f"  {minutes:g} min: decode + diarize + transcribe / whisperx = {ours / of['whisperx']:.2f} ({parts})"
            )
    print()
    print(
        f"{'audio':>8s} {'step':<11s}{'load s':>8s}{'step s':>9s}{'RTF':>9s}{'RTF/short':>10s}"
        f"{'peak MB':>9s}{'peak/short':>11s}  peak after load / decode / step (MB)"
    )
    for r in rows:
        b = base[r["step"]]
        rtf, brtf = r["step_s"] / r["audio_s"], b["step_s"] / b["audio_s"]
        ph = r["phases"]
        print(
            f"{r['minutes']:6g} m {r['step']:<11s}{r['load_s']:8.1f}{r['step_s']:9.1f}{rtf:9.4f}{rtf / brtf:10.2f}"
            f"{r['peak_mb']:9.0f}{r['peak_mb'] / b['peak_mb']:11.2f}  "
            f"{ph['model loaded']:.0f} / {ph['decoded']:.0f} / {ph['step done']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

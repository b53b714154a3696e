"""Word timings from the ASR pass vs from a second encoder pass: time and accuracy, one run.

The transcriber takes Whisper's cross-attention word timings from the encoder output the
decoding already computed (``Transcriber._decode`` with ``speech/align.py``'s
``cross_attention_alignments``; ``words_in_asr_pass=False`` for the old way); before, every VAD
chunk was encoded a second time for the alignment (``align.cross_attention_words``). Both run
here on the sample archive with the same loaded model, and are scored on the truth's turn
boundaries (the first word's start and the last word's end of every turn: where speaker
attribution needs the times):

    .venv/bin/python benchmarks/word_timing.py [--model packaged:base]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_archive"


def norm(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def boundary_errors(words, turns) -> list[float]:
    out = []
    for turn in turns:
        text = turn["text"].split()
        first = [w for w in words if norm(w.word) == norm(text[0]) and abs(w.start_s - turn["start_s"]) < 1.5]
        last = [w for w in words if norm(w.word) == norm(text[-1]) and abs(w.end_s - turn["end_s"]) < 1.5]
        out += [min(abs(w.start_s - turn["start_s"]) for w in first)] if first else []
        out += [min(abs(w.end_s - turn["end_s"]) for w in last)] if last else []
    return out


def main() -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="packaged:base")
    args = ap.parse_args()
    from opentranscribe_pipeline.speech import asr
    from opentranscribe_pipeline.speech.decode import decode
    from opentranscribe_pipeline.speech.models import resolve_asr_model

    truth = json.loads((SAMPLE / "truth.json").read_text())
    files = {k: v for k, v in truth.items() if v.get("turns")}
    audio = {k: decode(str(SAMPLE / k)).samples for k in files}
    seconds = {"one pass": 0.0, "two passes": 0.0}
    errors: dict[str, list[float]] = {"one pass": [], "two passes": []}
    texts: dict[str, list[str]] = {"one pass": [], "two passes": []}
    with asr.Transcriber(resolve_asr_model(args.model), asr.AsrOptions()) as t:
        t.transcribe(audio[next(iter(audio))])  # warm-up, not counted
        for mode in ("two passes", "one pass", "two passes", "one pass"):  # interleaved
            t.words_in_asr_pass = mode == "one pass"
            for key, samples in audio.items():
                t0 = time.perf_counter()
                tx = t.transcribe(samples)
                seconds[mode] += time.perf_counter() - t0
                words = [w for s in tx.segments for w in s.words]
                errors[mode] += boundary_errors(words, files[key]["turns"])
                texts[mode].append(" ".join(s.text for s in tx.segments))
    audio_s = sum(a.size for a in audio.values()) / 16000 * 2
    print(f"{len(files)} files, {audio_s / 2:.1f} s of audio, twice each, model {args.model}")
    print(f"{'':12s}{'transcribe s':>14s}{'RTF':>8s}{'boundaries':>12s}{'mean err s':>12s}{'median':>8s}{'p90':>7s}")
    for mode in seconds:
        e = np.array(errors[mode])
        print(
            f"{mode:12s}{seconds[mode]:14.1f}{seconds[mode] / audio_s:8.3f}{len(e):12d}{e.mean():12.3f}"
            f"{np.median(e):8.3f}{np.quantile(e, 0.9):7.3f}"
        )
    print(f"time one pass / two passes: {seconds['one pass'] / seconds['two passes']:.2f}")
    print(f"same text: {texts['one pass'] == texts['two passes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

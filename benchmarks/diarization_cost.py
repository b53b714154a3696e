"""Diarization on real speech: time and DER of the packaged pipelines, per embedding.

pyannote.audio's two-person sample and the AMI excerpts of its source distribution
(``tests/data/real_speech.py``; the AMI files only when pip can fetch the sdist), tiled to
``--minutes`` each so fixed costs do not hide the per-second ones, diarized by each packaged
pipeline asked for (``packaged-ge2e``: resemblyzer's GE2E, the baseline; ``packaged``:
CAM++, the default), both loaded, file by file in turn. Prints per pipeline: seconds,
real-time factor, ratio to the first, DER (collar 0.25 s and none) against the references
(tiled too), and speakers found against the true count, summed over the files.

    .venv/bin/python benchmarks/diarization_cost.py [--pipelines packaged-ge2e packaged] [--minutes 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiled(file, minutes: float):
    from tests.data.real_speech import RealFile, RefTurn

    n = max(1, int(minutes * 60 * 16000 // file.samples.size))
    length = file.samples.size / 16000
    turns = [RefTurn(t.start_s + k * length, t.end_s + k * length, t.speaker) for k in range(n) for t in file.turns]
    return RealFile(file.name, np.tile(file.samples, n), turns)


def main() -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipelines", nargs="+", default=["packaged-ge2e", "packaged"])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--ami", type=int, default=4, help="how many AMI excerpts (0: the pyannote sample only)")
    args = ap.parse_args()
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer
    from tests.data.real_speech import pyannote_debug_set, pyannote_sample

    files = [pyannote_sample()] + ((pyannote_debug_set() or [])[: args.ami] if args.ami else [])
    files = [tiled(f, args.minutes) for f in files]
    audio_s = sum(f.samples.size for f in files) / 16000
    names = args.pipelines
    seconds = dict.fromkeys(names, 0.0)
    found = dict.fromkeys(names, 0)
    metrics = {p: (DiarizationErrorRate(collar=0.25), DiarizationErrorRate()) for p in names}
    diarizers = {p: Diarizer(DiarizationOptions(pipeline=p)) for p in names}
    for d in diarizers.values():
        d.load()
        d.diarize(files[0].samples[: 16000 * 10])  # warm-up
    for f in files:
        ref = Annotation()
        for t in f.turns:
            ref[Segment(t.start_s, t.end_s)] = t.speaker
        for p, diarizer in diarizers.items():
            t0 = time.perf_counter()
            result = diarizer.diarize(f.samples)
            seconds[p] += time.perf_counter() - t0
            hyp = Annotation()
            for t in result.turns:
                hyp[Segment(t.start_s, t.end_s)] = t.speaker
            for m in metrics[p]:
                m(ref, hyp)
            found[p] += len(result.speakers)
            print(
                f"  {f.name:18s} {p:14s} {time.perf_counter() - t0:7.1f} s, {len(result.speakers)}/{len(f.speakers)} speakers",
                flush=True,
            )
    true = sum(len(f.speakers) for f in files)
    print(
        f"{len(files)} real files tiled to {args.minutes:g} min, {audio_s:.0f} s of audio, cpu threads {os.cpu_count()}"
    )
    print(f"{'pipeline':>14s}{'seconds':>10s}{'RTF':>8s}{'ratio':>8s}{'DER c0.25':>11s}{'DER':>8s}{'speakers':>10s}")
    for p in names:
        m25, m0 = metrics[p]
        print(
            f"{p:>14s}{seconds[p]:10.1f}{seconds[p] / audio_s:8.4f}{seconds[p] / seconds[names[0]]:8.2f}"
            f"{abs(m25):11.4f}{abs(m0):8.4f}{found[p]:>6d}/{true}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

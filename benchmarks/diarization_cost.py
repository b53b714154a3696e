"""Diarization on real speech: time and DER of the packaged pipeline, per embedding setting.

pyannote.audio's two-person sample and the AMI excerpts of its source distribution
(``tests/data/real_speech.py``; the AMI files only when pip can fetch the sdist), tiled to
``--minutes`` each so fixed costs do not hide the per-second ones, diarized with the
per-window partial rate of the packaged embedding (``ResemblyzerEmbedding.window_rate``) at
each value asked for, in one run, interleaved. Prints per setting: seconds, real-time factor,
ratio to the first setting, DER (collar 0.25 s and none) against the references (tiled too).

    .venv/bin/python benchmarks/diarization_cost.py [--rates 2.0 1.0] [--minutes 2]
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
    ap.add_argument("--rates", type=float, nargs="+", default=[2.0, 1.0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--ami", type=int, default=4, help="how many AMI excerpts (0: the pyannote sample only)")
    args = ap.parse_args()
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer, ResemblyzerEmbedding
    from tests.data.real_speech import pyannote_debug_set, pyannote_sample

    files = [pyannote_sample()] + ((pyannote_debug_set() or [])[: args.ami] if args.ami else [])
    files = [tiled(f, args.minutes) for f in files]
    audio_s = sum(f.samples.size for f in files) / 16000
    seconds = dict.fromkeys(args.rates, 0.0)
    metrics = {r: (DiarizationErrorRate(collar=0.25), DiarizationErrorRate()) for r in args.rates}
    with Diarizer(DiarizationOptions()) as diarizer:
        diarizer.diarize(files[0].samples[: 16000 * 10])  # warm-up
        for rate in args.rates:
            ResemblyzerEmbedding.window_rate = rate
            for f in files:
                t0 = time.perf_counter()
                result = diarizer.diarize(f.samples)
                seconds[rate] += time.perf_counter() - t0
                ref, hyp = Annotation(), Annotation()
                for t in f.turns:
                    ref[Segment(t.start_s, t.end_s)] = t.speaker
                for t in result.turns:
                    hyp[Segment(t.start_s, t.end_s)] = t.speaker
                for m in metrics[rate]:
                    m(ref, hyp)
    first = args.rates[0]
    print(
        f"{len(files)} real files tiled to {args.minutes:g} min, {audio_s:.0f} s of audio, cpu threads {os.cpu_count()}"
    )
    print(f"{'window_rate':>12s}{'seconds':>10s}{'RTF':>8s}{'ratio':>8s}{'DER c0.25':>11s}{'DER':>8s}")
    for rate in args.rates:
        m25, m0 = metrics[rate]
        print(
            f"{rate:12g}{seconds[rate]:10.1f}{seconds[rate] / audio_s:8.4f}{seconds[rate] / seconds[first]:8.2f}"
            f"{abs(m25):11.4f}{abs(m0):8.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

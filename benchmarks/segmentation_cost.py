"""SincNet's first layer once per stretch of audio (``speech/sliding.py``) against pyannote's
own ``Inference``, in one run: CPU time of each segmentation pass, how far apart the scores are,
and whether WhisperX's VAD cuts the same speech regions from them.

For both packaged segmentation checkpoints (WhisperX's VAD checkpoint: 5 s windows every
0.5 s; segmentation-3.0: 10 s windows every 1.5 s, the diarizer's default) on real speech
(the AMI excerpts of pyannote.audio's source distribution and its sample, concatenated; run
``make real-speech`` first), interleaved and repeated, torch on one thread:

- CPU seconds per audio second of each, and the ratio shared / pyannote's;
- the largest and the median difference of the per-window scores;
- for WhisperX's checkpoint: the speech regions WhisperX's VAD cuts (``SpeechActivity``:
  aggregation, then onset 0.5 / offset 0.363) per file, identical or not, on every real file
  and on a long file (``--long-minutes``, the real files looped).

    .venv/bin/python benchmarks/segmentation_cost.py [--repeat 3] [--long-minutes 30]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="timed passes of each (interleaved)")
    ap.add_argument("--long-minutes", type=float, default=30.0, help="a long file for the speech regions (0: none)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import real_speech
    import torch
    from pyannote.audio import Inference, Model

    from opentranscribe_pipeline.speech.activity import SpeechActivity, bundled_checkpoint
    from opentranscribe_pipeline.speech.packaged import SEGMENTATION_3, segmentation_checkpoint
    from opentranscribe_pipeline.speech.sliding import SharedFirstLayerInference

    torch.set_num_threads(1)
    files = real_speech.pyannote_debug_set()
    if files is None:
        raise SystemExit("the AMI excerpts are not fetched: run `make real-speech` first")
    files = [*files, real_speech.pyannote_sample()]
    joined = np.concatenate([f.samples for f in files]).astype(np.float32)
    print(f"{len(files)} real files, {joined.size / 16000:.0f} s joined; torch on 1 thread", flush=True)

    def as_file(x: np.ndarray) -> dict:
        return {"waveform": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None], "sample_rate": 16000}

    for label, checkpoint, step in (
        ("whisperx VAD checkpoint", bundled_checkpoint(), None),
        ("segmentation-3.0", segmentation_checkpoint(), SEGMENTATION_3["step"]),
    ):
        model = Model.from_pretrained(checkpoint)
        duration = model.specifications.duration
        kw = dict(duration=duration, step=step or 0.1 * duration, skip_aggregation=True, batch_size=32)
        theirs, ours = Inference(model, **kw), SharedFirstLayerInference(model, **kw)
        cpu = {"pyannote": [], "shared": []}
        outputs = {}
        for i in range(args.repeat + 1):  # the first pass of each warms up, untimed
            order = [("pyannote", theirs), ("shared", ours)]
            for name, inference in order if i % 2 else order[::-1]:
                c0 = time.process_time()
                outputs[name] = inference(as_file(joined))
                if i:
                    cpu[name].append(time.process_time() - c0)
        per_s = {k: float(np.median(v)) / (joined.size / 16000) for k, v in cpu.items()}
        diff = np.abs(outputs["shared"].data - outputs["pyannote"].data).max(axis=(1, 2))
        print(
            f"{label}: {outputs['shared'].data.shape[0]} windows of {duration:g} s every {kw['step']:g} s; "
            f"CPU s per audio s: pyannote {per_s['pyannote']:.4f}, shared {per_s['shared']:.4f} "
            f"(ratio {per_s['shared'] / per_s['pyannote']:.2f}); "
            f"score difference per window: median {np.median(diff):.1e}, largest {diff.max():.1e}",
            flush=True,
        )
        if checkpoint != bundled_checkpoint():
            continue
        tests = [(f.name, f.samples) for f in files]
        if args.long_minutes:
            n = int(args.long_minutes * 60 * 16000)
            tests.append((f"long ({args.long_minutes:g} min)", np.tile(joined, n // joined.size + 1)[: n + 777]))
        same = 0
        for name, x in tests:
            acts = [
                SpeechActivity.from_segmentations(inf(as_file(x)), inf, x.size, 16000, checkpoint)
                for inf in (theirs, ours)
            ]
            a, b = acts[0].islands(), acts[1].islands()
            same += a == b
            if a != b:
                moved = [(p, q) for p, q in zip(a, b) if p != q]
                print(f"  {name}: {len(a)} vs {len(b)} speech regions; differ: {moved[:3]}")
        print(f"  WhisperX's speech regions identical on {same} of {len(tests)} files", flush=True)


if __name__ == "__main__":
    main()

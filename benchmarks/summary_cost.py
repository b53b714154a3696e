"""What the summary step (extractive, the default) costs per audio hour, beside transcription
measured in the same run.

Files: the sample archive's 8 dialogues and the translation fixtures (French, German, Spanish
and an English meeting; their reference English stands in for ``segments_en``), pyannote's
real sample call and, where fetched (``make real-speech``), the 13 AMI excerpts and those end to
end as one 6.5-minute meeting. Per file, in one process, with one loaded ASR model
(``--model``, default ``packaged:base``) and one loaded text model (the packaged MiniLM, torch
threads as the step bounds them, ``--threads``):

1. **transcription**: ``Transcriber.transcribe`` (VAD + batched faster-whisper + word timings);
2. **summary**: what ``assets/summaries.py`` runs per file: sentences from the segments (words
   for their times; speakers from the reference turns, as diarization would give them), the
   extractive summary and key points and the topics, once in the media's language and, for
   the foreign fixtures, once more in English.

Each file's two steps run back to back, so a load change on a shared machine hits both alike.
Then the summary alone on a 3-hour transcript (the sample transcripts repeated with new times)
to show the step stays linear (its candidate n-grams are capped). Model loads are reported
apart (once per run, not per hour).

    .venv/bin/python benchmarks/summary_cost.py [--model packaged:base] [--threads 2] [--no-ami]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

TRANSLATION = ROOT / "tests" / "data" / "translation"


def items(use_ami: bool) -> list[tuple[str, str, object, list, str | None, list | None]]:
    """(set, name, samples, reference turns, language, reference English turns or None)."""
    from quality_cost import files

    from opentranscribe_pipeline.speech.decode import decode

    out = [(g, n, x, t, None, None) for g, n, x, t in files(use_ami)]
    truth = json.loads((TRANSLATION / "truth.json").read_text())
    for name, v in sorted(truth.items()):
        turns = [(t["start_s"], t["end_s"], t["speaker"]) for t in v["turns"]]
        english = [t for t in v["turns"] if "english" in t] or None
        samples = decode(str(TRANSLATION / name)).samples
        out.append(("translation", name, samples, turns, v["language"], english))
    return out


def segment_rows(transcript, turns) -> tuple[list[dict], list[dict]]:
    from quality_cost import _speaker_of

    segs, words = [], []
    for i, s in enumerate(transcript.segments):
        segs.append(
            {"segment_id": i, "start_s": s.start_s, "end_s": s.end_s, "text": s.text}
            | {"speaker": _speaker_of(s.start_s, s.end_s, turns)}
        )
        words += [
            {"segment_id": i, "word_index": k, "start_s": w.start_s, "end_s": w.end_s} for k, w in enumerate(s.words)
        ]
    return segs, words


def summarize(embedder, segs, words, language, english) -> int:
    from opentranscribe_pipeline.deliver import summaries as sm

    out = sm.extract(sm.sentences_from_segments(segs, words), language, embedder.encode)
    if english:
        en_rows = [
            {
                "segment_id": i,
                "start_s": t["start_s"],
                "end_s": t["end_s"],
                "text": t["english"],
                "speaker": t["speaker"],
            }
            for i, t in enumerate(english)
        ]
        sm.extract(sm.sentences_from_segments(en_rows), "en", embedder.encode)
    return len(out.key_points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the text model (the step's default)")
    ap.add_argument("--no-ami", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from opentranscribe_pipeline.resources.summaries import bounded_text_model
    from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber
    from opentranscribe_pipeline.speech.models import resolve_asr_model

    files = items(not args.no_ami)
    audio_s = sum(len(x) / 16000 for _, _, x, *_ in files)
    print(f"{len(files)} files, {audio_s:.0f} s of audio; ASR {args.model}; text model threads {args.threads}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    tx, sx = [0.0, 0.0], [0.0, 0.0]
    t0 = time.perf_counter()
    with Transcriber(resolve_asr_model(args.model), AsrOptions()) as tr:
        asr_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        with bounded_text_model("packaged:all-minilm-l6-v2", "cpu", args.threads) as embedder:
            text_load = time.perf_counter() - t0
            tr.transcribe(files[0][2][: 5 * 16000])  # warm-ups: first-call costs are not per hour
            embedder.encode(["warm up"])
            all_segs = []
            for _group, _name, samples, turns, language, english in files:
                w, c = time.perf_counter(), time.process_time()
                transcript = tr.transcribe(samples)
                tx[0] += time.perf_counter() - w
                tx[1] += time.process_time() - c
                segs, words = segment_rows(transcript, turns)
                w, c = time.perf_counter(), time.process_time()
                summarize(embedder, segs, words, language or transcript.language, english)
                sx[0] += time.perf_counter() - w
                sx[1] += time.process_time() - c
                all_segs.append((segs, len(samples) / 16000))
            # a 3-hour transcript: the files' segments again and again, times shifted
            long, offset, i = [], 0.0, 0
            while offset < 3 * 3600:
                segs, dur = all_segs[i % len(all_segs)]
                long += [
                    {**s, "segment_id": len(long) + k, "start_s": s["start_s"] + offset}
                    | {"end_s": s["end_s"] + offset}
                    for k, s in enumerate(segs)
                ]
                offset += dur
                i += 1
            w, c = time.perf_counter(), time.process_time()
            n_points = summarize(embedder, long, None, "en", None)
            lw, lc = time.perf_counter() - w, time.process_time() - c
    hours = audio_s / 3600
    print(f"\nmodel loads (once per run): ASR {asr_load:.1f} s, text model {text_load:.1f} s")
    print("cost per audio hour (same run, each file transcribed then summarized; ratio = summary / transcription)")
    print(f"  transcription: wall {tx[0] / hours:7.0f} s, CPU {tx[1] / hours:7.0f} s")
    print(
        f"  summary:       wall {sx[0] / hours:7.0f} s, CPU {sx[1] / hours:7.0f} s;"
        f" ratio wall {sx[0] / tx[0]:.4f}, CPU {sx[1] / tx[1]:.4f}"
    )
    print(
        f"  3-hour transcript ({len(long)} segments, summary only): wall {lw:.1f} s, CPU {lc:.1f} s"
        f" = {lw / 3:.1f} s wall per audio hour; {n_points} key points"
    )
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""What the quality step costs per audio hour, beside transcription measured in the same run,
and what it says about the sample archive and about real speech.

Files: the sample archive's 8 dialogues (synthesized voices, 130 s), pyannote.audio's sample
(a real 8 kHz phone call, 30 s) and, where fetched (``make real-speech``), the 13 AMI meeting
excerpts of pyannote's debug set (real 16 kHz, 30 s each). Per file, in one process, with one
loaded ASR model (``--model``, default ``packaged:base``) and one DNSMOS session:

1. **transcription**: ``Transcriber.transcribe`` (WhisperX VAD + batched faster-whisper +
   word timings), the step the budget is stated against;
2. **quality**: what ``assets/quality.py`` runs per file: DNSMOS per segment
   (``score_segments``, speakers from the file's reference turns, as the diarizer would give
   them), the segment rows and flags, loudness, true peak, clipping, bandwidth, the file row.

The two run back to back file by file, so a load change on a shared machine hits both alike. Wall
and process CPU seconds (all threads) are summed per step; printed per audio hour and as the
ratio quality / transcription (the issue's budget: at most 0.10). Then the quality figures
per file and per set.

Quality's CPU is also split into DNSMOS (``score_segments``) and the rest (rows, flags, the
signal measures), so a change can be placed.

    .venv/bin/python benchmarks/quality_cost.py [--model packaged:base] [--threads 1] [--variant int8] [--no-ami] [--strides 1,2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

SAMPLE = ROOT / "tests" / "data" / "sample_archive"
SAMPLE_RATE = 16_000


def _speaker_of(start: float, end: float, turns: list[tuple[float, float, str]]) -> str | None:
    best, best_s = None, 0.0
    for s, e, spk in turns:
        ov = min(end, e) - max(start, s)
        if ov > best_s:
            best, best_s = spk, ov
    return best


def files(use_ami: bool) -> list[tuple[str, str, np.ndarray, list[tuple[float, float, str]]]]:
    """(set, name, 16 kHz samples, reference turns)."""
    import importlib.util

    import real_speech

    from opentranscribe_pipeline.speech.decode import decode

    out = []
    truth = json.loads((SAMPLE / "truth.json").read_text())
    for key, v in sorted(truth.items()):
        turns = [(t["start_s"], t["end_s"], t["speaker"]) for t in v["turns"]]
        out.append(("sample archive", key.split("/")[-1], decode(str(SAMPLE / key)).samples, turns))
    folder = Path(next(iter(importlib.util.find_spec("pyannote.audio").submodule_search_locations))) / "sample"
    ref = real_speech.read_rttm(folder / "sample.rttm")["sample"]
    out.append(
        (
            "real speech",
            "pyannote-sample",
            real_speech._load(folder / "sample.wav"),
            [(t.start_s, t.end_s, t.speaker) for t in ref],
        )
    )
    if use_ami:
        ami = real_speech.pyannote_debug_set() or []
        for f in ami:
            out.append(("real speech", f.name, f.samples, [(t.start_s, t.end_s, t.speaker) for t in f.turns]))
        if ami:  # the excerpts end to end: one 6.5 min meeting file, AMI's speaker ids kept
            offset, turns = 0.0, []
            for f in ami:
                turns += [(t.start_s + offset, t.end_s + offset, t.speaker) for t in f.turns]
                offset += len(f.samples) / SAMPLE_RATE
            out.append(("one long file", "ami excerpts end to end", np.concatenate([f.samples for f in ami]), turns))
    return out


def quality_of(model, samples: np.ndarray, segments, turns, floor: float, stride: int = 1) -> dict:
    """What the step computes for one file (``assets/quality.score_file`` without storage)."""
    from opentranscribe_pipeline.speech import quality as q

    segs = [
        q.SegmentIn(
            segment_id=i,
            start_s=s.start_s,
            end_s=s.end_s,
            text=s.text,
            speaker=_speaker_of(s.start_s, s.end_s, turns),
            avg_logprob=s.avg_logprob,
            n_words=len(s.words),
        )
        for i, s in enumerate(segments)
    ]
    speech = q.union((s, e) for s, e, _ in turns)
    spans = [(s.start_s, s.end_s) for s in segs]
    c = time.process_time()
    scores = q.score_segments(model, samples, spans, [s.speaker for s in segs], stride=stride)
    dnsmos_cpu = time.process_time() - c
    rows = q.segment_quality_rows(segs, scores, samples, speech)
    values = q.media_quality_values(rows, q.measure_audio(samples), len(samples) / q.SAMPLE_RATE, speech, floor)
    return {"rows": rows, "dnsmos_cpu": dnsmos_cpu, **values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--threads", type=int, default=None, help="DNSMOS onnxruntime threads (default: the step's)")
    ap.add_argument("--variant", default="int8", help="DNSMOS run: int8 (the step's default) or fp32")
    ap.add_argument("--no-ami", action="store_true", help="leave the AMI excerpts out")
    ap.add_argument("--strides", default="1,2", help="dnsmos_stride values to time (the first gives the figures)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from opentranscribe_pipeline import settings
    from opentranscribe_pipeline.speech import quality as q
    from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber
    from opentranscribe_pipeline.speech.models import resolve_asr_model

    floor = settings.quality_floor()
    threads = q.DNSMOS_THREADS if args.threads is None else args.threads
    items = files(not args.no_ami)
    audio_s = sum(len(x) for _, _, x, _ in items) / q.SAMPLE_RATE
    print(f"{len(items)} files, {audio_s:.0f} s of audio; ASR {args.model}; DNSMOS {args.variant}, threads {threads}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    strides = [int(x) for x in args.strides.split(",")]
    groups = list(dict.fromkeys(g for g, *_ in items))
    # per set: transcription (wall, CPU), quality per stride (wall, CPU, windows), audio seconds
    tx = {g: [0.0, 0.0] for g in groups}
    qc = {(g, k): [0.0, 0.0, 0, 0.0] for g in groups for k in strides}
    audio = {g: 0.0 for g in groups}
    results = []
    with (
        Transcriber(resolve_asr_model(args.model), AsrOptions()) as tr,
        q.dnsmos_session(threads, args.variant) as dnsmos,
    ):
        tr.transcribe(items[0][2][: 5 * q.SAMPLE_RATE])  # warm-up: first-call costs are not per hour
        q.score_segments(dnsmos, items[0][2], [(0.0, 3.0)])
        for group, name, samples, turns in items:  # each file's steps back to back: the same load
            audio[group] += len(samples) / q.SAMPLE_RATE
            w, c = time.perf_counter(), time.process_time()
            transcript = tr.transcribe(samples)
            tx[group][0] += time.perf_counter() - w
            tx[group][1] += time.process_time() - c
            for stride in strides:
                before = dnsmos.windows_scored
                w, c = time.perf_counter(), time.process_time()
                res = quality_of(dnsmos, samples, transcript.segments, turns, floor, stride)
                cost = qc[(group, stride)]
                cost[0] += time.perf_counter() - w
                cost[1] += time.process_time() - c
                cost[2] += dnsmos.windows_scored - before
                cost[3] += res["dnsmos_cpu"]
                if stride == strides[0]:
                    results.append((group, name, len(samples) / q.SAMPLE_RATE, res))

    print()
    print("cost per audio hour (same run, each file transcribed then judged; ratio = quality / transcription)")
    for group in [*groups, "all"]:
        sel = groups if group == "all" else [group]
        hours = sum(audio[g] for g in sel) / 3600
        tw, tc = sum(tx[g][0] for g in sel), sum(tx[g][1] for g in sel)
        print(f"  {group} ({hours * 3600:.0f} s): transcription wall {tw / hours:6.0f} s, CPU {tc / hours:6.0f} s")
        for stride in strides:
            qw = sum(qc[(g, stride)][0] for g in sel)
            qcpu = sum(qc[(g, stride)][1] for g in sel)
            n = sum(qc[(g, stride)][2] for g in sel)
            dn = sum(qc[(g, stride)][3] for g in sel)
            print(
                f"      quality stride {stride}: wall {qw / hours:6.0f} s, CPU {qcpu / hours:6.0f} s (DNSMOS {dn / hours:.0f},"
                f" rest {(qcpu - dn) / hours:.0f}), {n:4d} windows; ratio wall {qw / tw:.3f}, CPU {qcpu / tc:.3f} (budget 0.10)"
            )
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")

    print()
    head = f"{'set':15} {'file':22} {'dur':>5} {'segs':>4} {'scored':>6} {'ovrl':>5} {'p10':>5} {'sig':>5} {'bak':>5}"
    print(head + f" {'LUFS':>6} {'dBTP':>6} {'bw Hz':>6} {'above':>6}  flags (file; segments)")
    for group, name, dur, r in results:
        rows = r["rows"]
        scored = [x for x in rows if x["dnsmos_ovrl"] is not None]
        sig = np.mean([x["dnsmos_sig"] for x in scored]) if scored else float("nan")
        bak = np.mean([x["dnsmos_bak"] for x in scored]) if scored else float("nan")
        seg_flags: dict[str, int] = {}
        for x in rows:
            for f in x["flags"]:
                seg_flags[f] = seg_flags.get(f, 0) + 1

        def f(v, fmt="5.2f"):
            return format(v, fmt) if v is not None else "-"

        above = r["speech_above_floor_s"] / r["speech_s"] if r["speech_s"] else None
        print(
            f"{group:15} {name[:22]:22} {dur:5.1f} {len(rows):4d} {len(scored):6d} {f(r['dnsmos_ovrl_mean'])} "
            f"{f(r['dnsmos_ovrl_p10'])} {sig:5.2f} {bak:5.2f} {f(r['loudness_lufs'], '6.1f')} "
            f"{f(r['true_peak_dbtp'], '6.1f')} {f(r['bandwidth_hz'], '6.0f')} {f(above, '6.0%')}  "
            f"{','.join(r['flags']) or '-'}; {seg_flags or '-'}"
        )
    print()
    for group in dict.fromkeys(g for g, *_ in results):
        sel = [(d, r) for g, _, d, r in results if g == group]
        speech = sum(r["speech_s"] for _, r in sel)
        above = sum(r["speech_above_floor_s"] for _, r in sel)
        rows = [x for _, r in sel for x in r["rows"]]
        scored = [x for x in rows if x["dnsmos_ovrl"] is not None]
        flagged = sum(bool(x["flags"]) for x in rows)
        print(
            f"{group}: {len(sel)} files, {sum(d for d, _ in sel):.0f} s, speech {speech:.0f} s, at/above floor "
            f"{floor:g}: {above:.0f} s ({above / speech:.0%}); segments {len(rows)}, scored {len(scored)}, "
            f"flagged {flagged}; telephone band {sum(bool(r['telephone_band']) for _, r in sel)} file(s)"
        )


if __name__ == "__main__":
    main()

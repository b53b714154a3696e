"""Speaker quality on held-out synthetic dialogues: DER, word speaker accuracy, clustering.

Generates dialogues that are *not* the test fixtures (other sentences, another seed, one more
voice), so the tuned defaults are measured on data they were not tuned on. Voices recur
across files. For each file: WhisperX ASR (packaged model) -> packaged pyannote diarization
-> speaker attribution -> embeddings; then the archive-wide clustering.

Prints, against a baseline measured in the same run:
- DER (pyannote.metrics, collar 0.25 s) per file and overall;
- share of words with the right speaker, ours vs ``whisperx.assign_word_speakers`` on the same
  words and turns (WhisperX leaves words without a speaker when no turn overlaps them);
- cross-file clustering purity and coverage (incremental assignment and full re-clustering);
- cosine similarities of same-voice vs different-voice speakers (for the name-suggestion
  thresholds).

Run: ``.venv/bin/python benchmarks/speakers_quality.py [--model packaged:base] [--files 12]``
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT))

import make_sample_archive as gen  # noqa: E402

from opentranscribe_pipeline.speakers.cluster import VoiceIndex, assign_new, recluster  # noqa: E402
from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber  # noqa: E402
from opentranscribe_pipeline.speech.attribute import attribute_file  # noqa: E402
from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer  # noqa: E402
from opentranscribe_pipeline.speech.models import resolve_asr_model  # noqa: E402

gen.VOICES["kal"] = ("flite", "kal16")
gen.VOICES["esm"] = ("espeak-ng", "en-gb+m3")
SENTENCES = [
    "The harbour was quiet before the storm arrived.",
    "We counted forty boats along the northern pier.",
    "Nobody expected the bridge to close so early.",
    "My grandmother kept every letter in a wooden box.",
    "The library opens at nine on most weekdays.",
    "Could you repeat the last part of the question?",
    "I think the second option is much cheaper.",
    "The orchestra rehearsed the new piece all afternoon.",
    "Please bring the maps and a warm jacket tomorrow.",
    "Our team finished the survey two weeks ahead of plan.",
    "That is a fair point, but the costs keep rising.",
    "The museum will reopen after the renovation in spring.",
    "He walked to the station every morning for thirty years.",
    "The recording was made in a small kitchen in nineteen seventy.",
    "Let us move on to the next item on the agenda.",
    "I remember the sound of the trains at night.",
]


def make_dialogues(n_files: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    voices = sorted(gen.VOICES)
    out = []
    for i in range(n_files):
        k = 2 if i % 3 else 3
        who = list(rng.choice(voices, size=k, replace=False))
        turns = []
        for j in range(int(rng.integers(4, 7))):
            turns.append((who[j % k], SENTENCES[int(rng.integers(len(SENTENCES)))]))
        audio, truth = gen.build_dialogue(turns, rng)
        out.append((f"held-out-{i:02d}", audio, truth))
    return out


def optimal_map(turns, truth):
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for t in truth:
        ref[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in turns:
        hyp[Segment(t.start_s, t.end_s)] = t.speaker
    metric = DiarizationErrorRate(collar=0.25)
    der = metric(ref, hyp, detailed=True)
    return metric.optimal_mapping(ref, hyp), der


def true_speaker_at(truth, mid):
    for t in truth:
        if t["start_s"] <= mid <= t["end_s"]:
            return t["speaker"]
    return min(truth, key=lambda t: min(abs(mid - t["start_s"]), abs(mid - t["end_s"])))["speaker"]


def purity_coverage(pred, true):
    by_c, by_t = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for p, t in zip(pred, true):
        by_c[p][t] += 1
        by_t[t][p] += 1
    n = len(pred)
    return sum(max(c.values()) for c in by_c.values()) / n, sum(max(c.values()) for c in by_t.values()) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="packaged:base")
    ap.add_argument("--files", type=int, default=12)
    args = ap.parse_args()
    import pandas as pd
    import whisperx.diarize as wxd

    t0 = time.perf_counter()
    dialogues = make_dialogues(args.files)
    print(
        f"generated {len(dialogues)} dialogues, {sum(len(a) for _, a, _ in dialogues) / 16000:.1f} s, "
        f"voices {sorted(gen.VOICES)} in {time.perf_counter() - t0:.1f} s"
    )
    results = []
    with (
        Transcriber(resolve_asr_model(args.model), AsrOptions(device="cpu", compute_type="int8")) as asr,
        Diarizer(DiarizationOptions()) as diarizer,
    ):
        for name, audio, truth in dialogues:
            t1 = time.perf_counter()
            tx = asr.transcribe(audio)
            t_asr = time.perf_counter() - t1
            t1 = time.perf_counter()
            d = diarizer.diarize(audio)
            t_diar = time.perf_counter() - t1
            results.append((name, audio, truth, tx, d, t_asr, t_diar))

    total_der = collections.Counter()
    ours_ok = wx_ok = wx_missing = n_words = 0
    local_true, local_vec, local_w = [], [], []
    for name, audio, truth, tx, d, t_asr, t_diar in results:
        mapping, der = optimal_map(d.turns, truth)
        for k in ("confusion", "missed detection", "false alarm", "total"):
            total_der[k] += der[k]
        segs = [
            {"segment_id": i, "start_s": s.start_s, "end_s": s.end_s, "text": s.text, "language": tx.language}
            for i, s in enumerate(tx.segments)
        ]
        words = [
            {"segment_id": i, "word_index": j, "word": w.word, "start_s": w.start_s, "end_s": w.end_s}
            for i, s in enumerate(tx.segments)
            for j, w in enumerate(s.words)
        ]
        _, ours = attribute_file(segs, words, d.turns)
        # WhisperX's own assignment on the same words and turns
        diar_df = pd.DataFrame([{"start": t.start_s, "end": t.end_s, "speaker": t.speaker} for t in d.turns])
        wx_in = {
            "segments": [
                {
                    "start": s["start_s"],
                    "end": s["end_s"],
                    "text": s["text"],
                    "words": [
                        {"word": w["word"], "start": w["start_s"], "end": w["end_s"]}
                        for w in words
                        if w["segment_id"] == s["segment_id"]
                    ],
                }
                for s in segs
            ]
        }
        wx_out = wxd.assign_word_speakers(diar_df, wx_in) if len(diar_df) else wx_in
        wx_words = [w for s in wx_out["segments"] for w in s["words"]]
        for ow, ww in zip(ours, wx_words):
            truth_spk = true_speaker_at(truth, (ow["start_s"] + ow["end_s"]) / 2)
            n_words += 1
            ours_ok += mapping.get(ow["speaker"]) == truth_spk
            if "speaker" not in ww:
                wx_missing += 1
            else:
                wx_ok += mapping.get(ww["speaker"]) == truth_spk
        for v in d.voices:
            local_vec.append(v.embedding)
            local_w.append(v.speech_s)
            local_true.append(mapping.get(v.speaker, f"?{name}:{v.speaker}"))
        print(
            f"{name}: {len(audio) / 16000:5.1f} s, speakers {len(d.speakers)}/{len({t['speaker'] for t in truth})}, "
            f"DER {der['diarization error rate']:.3f}, asr {t_asr:.1f} s, diarization {t_diar:.1f} s"
        )

    der_all = (total_der["confusion"] + total_der["missed detection"] + total_der["false alarm"]) / total_der["total"]
    X = np.stack(local_vec)
    w = np.asarray(local_w)
    idx = VoiceIndex(model="resemblyzer")
    inc_ids, _ = assign_new(idx, X, w)
    full_ids, _, _, _ = recluster(X, w, [None] * len(X), VoiceIndex(model="resemblyzer"))
    p_inc, c_inc = purity_coverage(inc_ids, local_true)
    p_full, c_full = purity_coverage(full_ids, local_true)
    S = X @ X.T
    T = np.array(local_true)
    off = ~np.eye(len(T), dtype=bool)
    same, diff = S[(T[:, None] == T[None, :]) & off], S[T[:, None] != T[None, :]]
    print()
    print(f"DER (collar 0.25 s) over {len(results)} files: {der_all:.4f}")
    print(
        f"words with the right speaker: ours {ours_ok / n_words:.4f}, whisperx.assign_word_speakers "
        f"{wx_ok / n_words:.4f} ({wx_missing} of {n_words} words left without a speaker)"
    )
    print(
        f"clustering {len(X)} local speakers of {len(set(local_true))} voices: incremental purity {p_inc:.3f} "
        f"coverage {c_inc:.3f} ({len(set(inc_ids))} ids); full purity {p_full:.3f} coverage {c_full:.3f} "
        f"({len(set(full_ids))} ids)"
    )
    print(
        f"cosine same voice: min {same.min():.3f} p05 {np.percentile(same, 5):.3f} mean {same.mean():.3f}; "
        f"different voices: mean {diff.mean():.3f} p95 {np.percentile(diff, 95):.3f} max {diff.max():.3f}"
    )
    for thr in (0.70, 0.75, 0.78, 0.80, 0.85):
        tp, fp = int((same >= thr).sum()), int((diff >= thr).sum())
        print(
            f"  pairs >= {thr:.2f}: {tp / max(1, len(same)):.3f} of same-voice pairs, "
            f"precision {tp / max(1, tp + fp):.3f}"
        )
    print(
        json.dumps(
            {
                "der": round(der_all, 4),
                "word_acc": round(ours_ok / n_words, 4),
                "word_acc_whisperx": round(wx_ok / n_words, 4),
                "purity": round(p_full, 3),
                "coverage": round(c_full, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

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

``--real`` measures on real speech instead (``tests/data/real_speech.py``: pyannote.audio's
two-person sample, and the 13 AMI excerpts of its source distribution when pip can fetch
them), which is what the clustering thresholds are calibrated on:
- DER of the packaged diarizer on each real file (collar 0.25 s and none), and with
  ``num_speakers`` given;
- for each packaged encoder (3D-Speaker's CAM++, the default, and resemblyzer's GE2E, the
  one before it; MFCC statistics as a no-training baseline) and its embedding time as a ratio
  to GE2E's: similarity of one person in two files vs two different people, per length of
  speech (pieces of 2-12 s of each person's clean speech, and all of it), and the
  false-merge and missed-join rates on those pairs at the model's calibrated
  (speech-dependent) thresholds (``ClusterParams.for_model``);
- incremental and full clustering of every person's speech per file: ids holding two
  people (false merges) and people split over several ids (missed joins).

``--constructions`` (issue 30) diarizes real-speech constructions built from a fixed seed
(``tests/data/make_real_speech_drop.py``'s ``constructions``: the AMI excerpts and pyannote's
sample as recorded, one person with pauses, two and three people from different recordings
alternating with 0.2-1.0 s pauses, two answering each other with no pause), held-out
synthetic dialogues and the sample archive's 8 files (speaker counts a new default must keep), with the diarizer of a git revision (``--before``, loaded from
``git show`` as a module) and the working tree's, interleaved file by file in one process;
prints per file DER (collar 0.25 s), speakers found / true and the talk-time error (the
largest over the file's people: |talk time of the speaker mapped to them - theirs| / theirs),
whether the two diarizers' turns are identical, with ``--words`` the share of words (WhisperX,
``--model``, one transcript per file) given their true speaker, and the diarization cost per
audio second of each: wall time and CPU time, with torch on ``--threads`` (1 by default: on a
loaded machine the CPU time of several threads counts their waiting, which swayed earlier
ratios by 1.4x).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
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
    ap.add_argument("--real", action="store_true", help="real speech: calibration figures (see docstring)")
    ap.add_argument(
        "--der-files", type=int, default=None, help="--real: diarize only the first N real files for DER (0: none)"
    )
    ap.add_argument("--constructions", action="store_true", help="issue 30: real alternations, before/after")
    ap.add_argument("--seed", type=int, default=30, help="--constructions: the drop generator's seed")
    ap.add_argument("--before", default=BEFORE_REF, help="--constructions: the git revision to compare with")
    ap.add_argument("--synthetic", type=int, default=6, help="--constructions: held-out synthetic dialogues too")
    ap.add_argument(
        "--only", default=None, help="--constructions: only files whose name contains one of these (comma-separated)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="--constructions: torch threads (1: CPU time is the work done, not threads waiting on a loaded machine)",
    )
    ap.add_argument(
        "--words",
        action="store_true",
        help="--constructions: word-speaker accuracy too (WhisperX --model, once per file)",
    )
    for side in ("before", "after"):
        ap.add_argument(
            f"--{side}-env",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"--constructions: a setting of the {side} diarizer alone (the two share one environment), "
            "e.g. OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES=0",
        )
    args = ap.parse_args()
    if args.constructions:
        constructions_main(
            args.seed,
            args.before,
            args.synthetic,
            args.only,
            args.threads,
            args.model if args.words else None,
            dict(kv.split("=", 1) for kv in args.before_env),
            dict(kv.split("=", 1) for kv in args.after_env),
        )
        return
    if args.real:
        real_main(args.der_files)
        return
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


# -- real speech --------------------------------------------------------------------------------
PIECES_S = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, None)  # None: all of a person's clean speech in the file


def mfcc_embedding(wavs: list[np.ndarray]) -> np.ndarray:
    """No-training baseline: mean and standard deviation of 20 MFCCs (librosa), centred."""
    import librosa

    out = []
    for w in wavs:
        m = librosa.feature.mfcc(y=np.asarray(w, np.float32), sr=16000, n_mfcc=20)
        out.append(np.r_[m.mean(axis=1), m.std(axis=1)])
    X = np.asarray(out, np.float64)
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)
    return X


def real_der(files, forced: set[str]) -> list[tuple[str, str, float, float, int, int]]:
    """DER of the packaged diarizer on each file; again with ``num_speakers`` given for the
    files named in ``forced``. One pipeline load."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    out = []
    with Diarizer(DiarizationOptions()) as diarizer:
        for f in files:
            ref = Annotation()
            for t in f.turns:
                ref[Segment(t.start_s, t.end_s)] = t.speaker
            for label in ("estimated", "num_speakers given"):
                if label != "estimated" and f.name not in forced:
                    continue
                diarizer.options = DiarizationOptions(num_speakers=len(f.speakers) if label != "estimated" else None)
                d = diarizer.diarize(f.samples)
                hyp = Annotation()
                for t in d.turns:
                    hyp[Segment(t.start_s, t.end_s)] = t.speaker
                der25 = DiarizationErrorRate(collar=0.25)(ref, hyp)
                der0 = DiarizationErrorRate(collar=0.0)(ref, hyp)
                out.append((label, f.name, der25, der0, len(d.speakers), len(f.speakers)))
    return out


def real_main(der_files: int | None = None) -> None:
    import real_speech as rs

    from opentranscribe_pipeline.speakers.calibration import distribution_rows, operating_point, pair_similarities
    from opentranscribe_pipeline.speakers.cluster import ClusterParams
    from opentranscribe_pipeline.speech.encoders.campplus import CAMPP_MODEL, CamPlusEmbedding
    from opentranscribe_pipeline.speech.encoders.ge2e import RESEMBLYZER_MODEL, ResemblyzerEmbedding

    t0 = time.perf_counter()
    sample = rs.pyannote_sample()
    ami = rs.pyannote_debug_set() or []
    files = [sample, *ami]
    people = sorted({s for f in files for s in f.speakers})
    print(
        f"real speech: {len(files)} files ({sum(len(f.samples) for f in files) / 16000:.0f} s), "
        f"{len(people)} people; AMI excerpts {'found' if ami else 'NOT available (pip could not fetch them)'}"
    )

    if der_files != 0:
        print("\nDER of the packaged diarizer on real speech (collar 0.25 s / none; speakers found / true):")
        rows = real_der(files[:der_files], {sample.name})
        for label, name, d25, d0, found, true in rows:
            print(f"  {label:18s} {name:20s} DER {d25:.3f} / {d0:.3f}  speakers {found}/{true}", flush=True)
        est = [r for r in rows if r[0] == "estimated"]
        print(
            f"  estimated, mean over {len(est)} files: DER {np.mean([r[2] for r in est]):.3f} / "
            f"{np.mean([r[3] for r in est]):.3f}; AMI excerpts are meetings with overlap and 2-4 people per 30 s"
        )

    meta, wavs = [], []
    for L in PIECES_S:
        for f in files:
            for s in f.speakers:
                speech = rs.cut(f.samples, rs.exclusive_speech(f, s))
                for p in [speech] if L is None else rs.pieces_of(speech, L):
                    if len(p) >= 0.5 * 16000:
                        meta.append((f.name, s, len(p) / 16000, L))
                        wavs.append(p)
    encoders = {
        "CAM++ (packaged, the default)": (CAMPP_MODEL, CamPlusEmbedding("cpu")),
        "resemblyzer GE2E (packaged-ge2e)": (RESEMBLYZER_MODEL, ResemblyzerEmbedding("cpu")),
    }
    t1 = time.perf_counter()
    M = mfcc_embedding(wavs)
    t_mfcc = time.perf_counter() - t1
    vectors, seconds = {}, {}
    for name, (_model, enc) in encoders.items():
        enc.embed_many(wavs[:2])  # warm-up
        t1 = time.perf_counter()
        vectors[name] = enc.embed_many(wavs)
        seconds[name] = time.perf_counter() - t1
    base = "resemblyzer GE2E (packaged-ge2e)"
    speech_s = sum(len(w) for w in wavs) / 16000
    print(f"\n{len(wavs)} pieces ({speech_s:.0f} s of speech) embedded, time and ratio to GE2E:")
    for name, t in [*seconds.items(), ("MFCC statistics", t_mfcc)]:
        print(f"  {name:34s} {t:6.1f} s  ratio {t / max(seconds[base], 1e-9):.2f}")
    old = ClusterParams(threshold=0.80, merge_threshold=0.88, short_threshold=0.80, min_speech_s=0.0)
    for name, X in [*vectors.items(), ("MFCC statistics", M)]:
        model = encoders[name][0] if name in encoders else None
        params = ClusterParams.for_model(model) if model else None
        ok = np.isfinite(X).all(axis=1)
        print(
            f"\n== {name}"
            + (
                f": thresholds {params.threshold} / short {params.short_threshold} / merge {params.merge_threshold}"
                if params
                else ""
            )
        )
        for L in PIECES_S:
            idx = [i for i, m in enumerate(meta) if m[3] == L and ok[i]]
            pairs = pair_similarities(
                X[idx], [meta[i][1] for i in idx], [meta[i][0] for i in idx], np.array([meta[i][2] for i in idx])
            )
            if not len(pairs.different):
                continue
            auc = _auc(pairs.same, pairs.different)
            line = f"  {'all' if L is None else f'{L:g} s':>5} pieces: same person in two files n={len(pairs.same)}"
            if len(pairs.same):
                line += f" min {pairs.same.min():.3f} p05 {np.percentile(pairs.same, 5):.3f} median {np.median(pairs.same):.3f}"
            line += (
                f" | different people n={len(pairs.different)} median {np.median(pairs.different):.3f} "
                f"p99 {np.percentile(pairs.different, 99):.3f} max {pairs.different.max():.3f} | AUC {auc:.3f}"
            )
            print(line)
            if params is None:
                continue
            for label, p in (
                (("chosen", params), ("old 0.80", old)) if model == RESEMBLYZER_MODEL else (("chosen", params),)
            ):
                pt = operating_point(pairs, p)
                print(
                    f"      {label:9s} false merges {pt.false_merges}/{pt.different_pairs} "
                    f"({pt.false_merge_rate:.2%}), missed joins {pt.missed_joins}/{pt.same_pairs} "
                    f"({pt.missed_join_rate:.1%})"
                )
        if params is None:
            continue
        idx = [i for i, m in enumerate(meta) if ok[i] and m[3] is not None]
        rows = distribution_rows(
            pair_similarities(
                X[idx], [meta[i][1] for i in idx], [meta[i][0] for i in idx], np.array([meta[i][2] for i in idx])
            )
        )
        print("  all pieces by speech of the shorter one:")
        for r in rows:
            if r["n"]:
                print(
                    f"    {r['speech_s']:>7} s {r['pairs']:17s} n={r['n']:5d} min {r['min']:.3f} "
                    f"median {r['median']:.3f} max {r['max']:.3f}"
                )
        _real_clustering(meta, X, ok, {"chosen": params, **({"old 0.80": old} if model == RESEMBLYZER_MODEL else {})})
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


def _auc(same: np.ndarray, different: np.ndarray) -> float:
    """Probability that a same-person pair is more similar than a different-people pair."""
    if not len(same) or not len(different):
        return float("nan")
    d = np.sort(different)
    return float(np.mean(np.searchsorted(d, same, side="left") / len(d)))


def _real_clustering(meta, V, ok, choices: dict) -> None:
    from opentranscribe_pipeline.speakers.cluster import VoiceIndex, assign_new, recluster

    idx = [i for i, m in enumerate(meta) if m[3] is None and ok[i]]  # one local speaker per person and file
    X = V[idx]
    secs = np.array([meta[i][2] for i in idx])
    person = [meta[i][1] for i in idx]
    fileof = [meta[i][0] for i in idx]
    recurring = {p for p in person if len({f for q, f in zip(person, fileof) if q == p}) > 1}
    print(
        f"\nclustering {len(idx)} local speakers ({len(set(person))} people, {len(recurring)} in several files), "
        "one file per batch:"
    )
    for label, p in choices.items():
        index, inc = VoiceIndex(model="m"), [""] * len(idx)
        for f in sorted(set(fileof)):
            sel = [k for k, g in enumerate(fileof) if g == f]
            got, _ = assign_new(index, X[sel], secs[sel], p)
            for k, g in zip(sel, got):
                inc[k] = g
        full, _, _, _ = recluster(X, secs, inc, VoiceIndex(model="m", next_number=index.next_number), p)
        for how, ids in (("incremental", inc), ("full", full)):
            by_id = collections.defaultdict(set)
            for q, g in zip(person, ids):
                by_id[g].add(q)
            merged = sum(len(v) > 1 for v in by_id.values())
            joined = sum(len({g for q, g in zip(person, ids) if q == r}) == 1 for r in recurring)
            print(
                f"  {label:9s} {how:11s}: {len(by_id)} ids, {merged} holding two or more people "
                f"(false merges), {joined} of {len(recurring)} recurring people under one id"
            )


# -- issue 30: real people alternating, before/after --------------------------------------------
BEFORE_REF = "897c2af"  # the diarizer before issue 30


# the diarizer's modules under speech/, in an order where each one's imports come first (those
# a revision lacks are skipped: before issue 31 it was diarize.py and campplus.py)
DIARIZER_MODULES = (
    "encoders/base",
    "encoders/campplus",
    "encoders/ge2e",
    "encoders/__init__",
    "islands",
    "packaged",
    "campplus",
    "diarize",
)


def load_diarize_at(ref: str):
    """``speech/diarize.py`` and the modules it is made of (``DIARIZER_MODULES``) as they were
    at git ``ref``, as modules of the installed package named ``_<name>_at_<ref>`` (their
    relative imports resolve to each other; other modules are the working tree's)."""
    import importlib.util
    import re
    import subprocess

    pkg = "opentranscribe_pipeline.speech"
    tag = "".join(c if c.isalnum() else "_" for c in ref)
    sources = {}
    for m in DIARIZER_MODULES:
        shown = subprocess.run(
            ["git", "show", f"{ref}:opentranscribe_pipeline/speech/{m}.py"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode == 0:
            sources[m] = shown.stdout
    alias = {m.split("/")[0]: f"_{m.split('/')[0]}_at_{tag}" for m in sources}
    modules = []
    for m, src in sources.items():
        top, _, sub = m.partition("/")
        if not sub:  # a module of speech/: its imports of the others go to their copies at ref
            for other, other_alias in alias.items():
                src = re.sub(rf"from \.{other}\b", f"from .{other_alias}", src)
        name = f"{pkg}.{alias[top]}" + ("" if sub in ("", "__init__") else f".{sub}")
        spec = importlib.util.spec_from_loader(name, loader=None, is_package=sub == "__init__")
        module = importlib.util.module_from_spec(spec)
        module.__package__ = name if sub == "__init__" else name.rpartition(".")[0]
        sys.modules[name] = module
        modules.append((module, src))
    for module, src in modules:
        exec(compile(src, f"{ref}:{module.__name__}", "exec"), module.__dict__)
    return sys.modules[f"{pkg}.{alias['diarize']}"]


def talk_time_error(turns, truth, mapping) -> float:
    """The largest over the reference's people of |talk time of the speaker mapped to them -
    theirs| / theirs (talk time: the union of a speaker's turns)."""

    def union(intervals):
        total, end = 0.0, -1.0
        for a, b in sorted(intervals):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

    ref = collections.defaultdict(list)
    for t in truth:
        ref[t["speaker"]].append((t["start_s"], t["end_s"]))
    hyp = collections.defaultdict(list)
    for t in turns:
        hyp[t.speaker].append((t.start_s, t.end_s))
    back = {v: k for k, v in mapping.items()}  # reference person -> hypothesis speaker
    worst = 0.0
    for person, intervals in ref.items():
        mine = union(intervals)
        got = union(hyp.get(back.get(person), []))
        worst = max(worst, abs(got - mine) / mine)
    return worst


def word_speakers(tx, turns) -> list[tuple[float, str]]:
    """Each word of the transcript ``tx`` as (its middle, the speaker ``attribute_file`` gives it)."""
    segs = [
        {"segment_id": i, "start_s": s.start_s, "end_s": s.end_s, "text": s.text, "language": tx.language}
        for i, s in enumerate(tx.segments)
    ]
    words = [
        {"segment_id": i, "word_index": j, "word": w.word, "start_s": w.start_s, "end_s": w.end_s}
        for i, s in enumerate(tx.segments)
        for j, w in enumerate(s.words)
    ]
    _, ours = attribute_file(segs, words, turns)
    return [((w["start_s"] + w["end_s"]) / 2, w["speaker"]) for w in ours]


def version_in(module, settings: dict[str, str]) -> str:
    with environment(settings):
        return module.pipeline_version(module.PACKAGED)


@contextlib.contextmanager
def environment(settings: dict[str, str]):
    """The process environment with ``settings`` on top, for the length of the block (the
    diarizers read their settings, e.g. ``OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES``, from it
    when they load and when they run)."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sample_archive_files() -> list[tuple[str, str, np.ndarray, list[dict]]]:
    """The sample archive's 8 files with their truth.json turns (synthetic voices, kind
    ``sample_archive``): the speaker counts a new default diarizer must not lose."""
    from opentranscribe_pipeline.speech.decode import decode

    folder = ROOT / "tests" / "data" / "sample_archive"
    truth = json.loads((folder / "truth.json").read_text())
    return [
        (f"sample:{rel.split('/')[-1]}", "sample_archive", decode(str(folder / rel)).samples, t["turns"])
        for rel, t in truth.items()
    ]


def constructions_main(
    seed: int,
    before_ref: str,
    n_synthetic: int,
    only: str | None,
    threads: int = 1,
    asr_model: str | None = None,
    before_env: dict[str, str] | None = None,
    after_env: dict[str, str] | None = None,
) -> None:
    before_env, after_env = before_env or {}, after_env or {}
    import make_real_speech_drop as mrd
    import torch

    torch.set_num_threads(threads)

    from opentranscribe_pipeline.speech import diarize as after

    before = load_diarize_at(before_ref)
    rng = np.random.default_rng(seed)
    made = list(mrd.constructions(rng, monologues=3, alternating=4, answering=2, between=mrd.container_draws))
    files = [(stem, kind, audio, turns) for stem, kind, audio, turns in made]
    for name, audio, truth in make_dialogues(n_synthetic) if n_synthetic else []:
        files.append((name, "synthetic", audio, truth))
    files += sample_archive_files()
    if only:
        files = [f for f in files if any(part in f[0] for part in only.split(","))]
    print(
        f"{len(files)} files, {sum(a.size for _, _, a, _ in files) / 16000:.0f} s, seed {seed}, torch threads {threads}; "
        f"before: {before_ref} {before_env or ''} ({version_in(before, before_env)}), after: working tree "
        f"{after_env or ''} ({version_in(after, after_env)})",
        flush=True,
    )
    transcripts = {}
    if asr_model:  # one transcript per file, attributed with each diarizer's turns
        with Transcriber(resolve_asr_model(asr_model), AsrOptions(device="cpu", compute_type="int8")) as asr:
            transcripts = {name: asr.transcribe(audio) for name, _, audio, _ in files}
    rows = []
    cost = {"before": 0.0, "after": 0.0}
    cpu = {"before": 0.0, "after": 0.0}  # CPU time of the process (less swayed by other load)
    audio_s = 0.0
    with contextlib.ExitStack() as loaded:
        with environment(before_env):  # each loads in its own settings
            d_before = loaded.enter_context(before.Diarizer(before.DiarizationOptions()))
        with environment(after_env):
            d_after = loaded.enter_context(after.Diarizer(after.DiarizationOptions()))
        envs = {"before": before_env, "after": after_env}
        with environment(after_env):  # warm up both (first-call costs out of the timing)
            d_after.diarize(files[0][2][: 16000 * 5])
        with environment(before_env):
            d_before.diarize(files[0][2][: 16000 * 5])
        for i, (name, kind, audio, truth) in enumerate(files):
            out = {}
            order = [("before", d_before), ("after", d_after)]
            for label, d in order if i % 2 else order[::-1]:  # interleaved, alternating who goes first
                with environment(envs[label]):
                    t0, c0 = time.perf_counter(), time.process_time()
                    r = d.diarize(audio)
                cost[label] += time.perf_counter() - t0
                cpu[label] += time.process_time() - c0
                mapping, der = optimal_map(r.turns, truth)
                words = word_speakers(transcripts[name], r.turns) if name in transcripts else []
                right = sum(mapping.get(spk) == true_speaker_at(truth, mid) for mid, spk in words)
                out[label] = (
                    der["diarization error rate"],
                    len(r.speakers),
                    talk_time_error(r.turns, truth, mapping),
                    right / len(words) if words else None,
                    [(t.start_s, t.end_s, t.speaker) for t in r.turns],
                )
            audio_s += audio.size / 16000
            n_true = len({t["speaker"] for t in truth})
            rows.append((name, kind, out, n_true))
            b, a = out["before"], out["after"]
            words = f"  words right {b[3]:.3f} -> {a[3]:.3f}" if b[3] is not None else ""
            print(
                f"  {name:24s} {audio.size / 16000:5.1f} s  DER {b[0]:.3f} -> {a[0]:.3f}  speakers {b[1]}->{a[1]}/{n_true}"
                f"  talk-time error {b[2]:.3f} -> {a[2]:.3f}{words}  turns {'identical' if b[4] == a[4] else 'differ'}",
                flush=True,
            )
    print()
    for kind in ("as_recorded", "monologue", "alternating", "answering", "synthetic", "sample_archive"):
        mine = [r for r in rows if r[1] == kind]
        if mine:
            right = {k: sum(r[2][k][1] == r[3] for r in mine) for k in ("before", "after")}
            worst = {k: max(r[2][k][0] for r in mine) for k in ("before", "after")}
            mean = {k: float(np.mean([r[2][k][0] for r in mine])) for k in ("before", "after")}
            tt = {k: max(r[2][k][2] for r in mine) for k in ("before", "after")}
            words = ""
            if transcripts:
                low = {k: min(r[2][k][3] for r in mine) for k in ("before", "after")}
                words = f"; fewest words right {low['before']:.3f} -> {low['after']:.3f}"
            print(
                f"{kind:14s} {len(mine):2d} files, speakers right {right['before']} -> {right['after']}: DER mean {mean['before']:.3f} -> {mean['after']:.3f}, worst "
                f"{worst['before']:.3f} -> {worst['after']:.3f}; worst talk-time error {tt['before']:.3f} -> {tt['after']:.3f}"
                f"{words}"
            )
    same = sum(r[2]["before"][4] == r[2]["after"][4] for r in rows)
    print(f"turns identical before and after on {same} of {len(rows)} files")
    print(
        f"diarization cost per audio second: before {cost['before'] / audio_s:.4f} s, after {cost['after'] / audio_s:.4f} s "
        f"(ratio {cost['after'] / cost['before']:.2f}, same process, interleaved); CPU time per audio second: "
        f"before {cpu['before'] / audio_s:.4f} s, after {cpu['after'] / audio_s:.4f} s (ratio {cpu['after'] / cpu['before']:.2f})"
    )
    print(
        json.dumps(
            {
                "seed": seed,
                "before": before_ref,
                "before_env": before_env,
                "after_env": after_env,
                "threads": threads,
                "rows": [[n, k, {label: v[:4] for label, v in o.items()}] for n, k, o, _ in rows],
                "cost_before": cost["before"] / audio_s,
                "cost_after": cost["after"] / audio_s,
                "cpu_before": cpu["before"] / audio_s,
                "cpu_after": cpu["after"] / audio_s,
            }
        )
    )


if __name__ == "__main__":
    main()

"""How good a file's audio and transcript are: Whisper's confidences, the flags a reader
filters on, the ``segment_quality`` and ``media_quality`` rows. Dagster-free
(``assets/quality.py`` is the step over it).

The scores come from ``speech/dnsmos.py`` (DNSMOS P.835 per segment: the model, its int8 run,
segments into windows) and the file's signal measures from ``speech/loudness.py`` (loudness,
true peak, clipping, bandwidth); their public names are importable from here too.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .dnsmos import (  # noqa: F401 (re-exported: the quality step's one import)
    _POLY_BAK,
    _POLY_OVRL,
    _POLY_SIG,
    DNSMOS_BATCH,
    DNSMOS_THREADS,
    DNSMOS_VARIANT,
    DNSMOS_VARIANTS,
    DNSMOS_WINDOW,
    DNSMOS_WINDOW_S,
    MIN_DNSMOS_S,
    SAMPLE_RATE,
    Dnsmos,
    SegmentScore,
    _fill_window,
    _window_starts,
    dnsmos_calibration_windows,
    dnsmos_int8_path,
    dnsmos_model_path,
    dnsmos_session,
    dnsmos_version,
    score_segments,
    speaker_streams,
)
from .loudness import (  # noqa: F401 (re-exported)
    BANDWIDTH_DROP_DB,
    CLIP_LEVEL,
    TELEPHONE_BAND_HZ,
    AudioMeasures,
    clipped_share,
    effective_bandwidth_hz,
    integrated_loudness,
    long_term_spectrum,
    measure_audio,
    true_peak_dbtp,
)

# -- flag thresholds (docs/quality.md says where each comes from) ---------------------------
NOISY_BAK = 3.0  # DNSMOS bak under this: background noise a listener finds intrusive
LOW_AVG_LOGPROB = -1.0  # Whisper's own logprob_threshold: below it Whisper retries a window
HIGH_NO_SPEECH_PROB = 0.6  # Whisper's no_speech_threshold (with low log-probability: no speech)
HIGH_COMPRESSION_RATIO = 2.4  # Whisper's compression_ratio_threshold: repetitive text
REPEAT_MIN_WORDS = 5  # one word said this many times in a row is a loop ("no no no no no")
REPEAT_MIN_NGRAM = 3  # a phrase of 2-8 words said this many times in a row is a loop
REPEAT_MAX_N = 8
MISMATCH_MAX_SPEECH = 0.1  # a segment with text but under this share inside diarized speech
CLIPPED_SHARE = 0.001  # more than 0.1 % of the samples clipped: audibly clipped
UNTRANSCRIBED_SPEECH_S = 2.0  # media flag speech_without_text from this much speech no segment holds
UNTRANSCRIBED_SPEECH_SHARE = 0.1  # ... and this share of the file's speech


# -- transcript measures --------------------------------------------------------------------
def compression_ratio(text: str) -> float | None:
    """Whisper's own measure (``whisper.utils.compression_ratio``): UTF-8 bytes over zlib
    bytes. Repetitive text compresses well: above 2.4 Whisper treats a window as failed."""
    data = text.encode("utf-8")
    if not data:
        return None
    return len(data) / len(zlib.compress(data))


_WORD = re.compile(r"[\w']+", re.UNICODE)


def repetition_loop(text: str) -> str | None:
    """The first n-gram repeated back to back enough times to be a decoding loop, described;
    None if there is none. One word needs ``REPEAT_MIN_WORDS`` repeats (people do say "no no
    no"), a phrase of 2-8 words ``REPEAT_MIN_NGRAM``."""
    words = [w.lower() for w in _WORD.findall(text)]
    for n in range(1, REPEAT_MAX_N + 1):
        need = REPEAT_MIN_WORDS if n == 1 else REPEAT_MIN_NGRAM
        if len(words) < n * need:
            break
        for start in range(len(words) - n * need + 1):
            gram = words[start : start + n]
            count = 1
            while words[start + count * n : start + (count + 1) * n] == gram:
                count += 1
            if count >= need:
                return f"{' '.join(gram)!r} {count} times in a row"
    return None


# -- intervals ------------------------------------------------------------------------------
def union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in spans if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def overlap_s(span: tuple[float, float], merged: Sequence[tuple[float, float]]) -> float:
    """Seconds of ``span`` inside the (merged, sorted) spans."""
    s, e = span
    return sum(max(0.0, min(e, b) - max(s, a)) for a, b in merged if b > s and a < e)


def total_s(merged: Sequence[tuple[float, float]]) -> float:
    return sum(e - s for s, e in merged)


def intersect(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for s, e in a:
        for s2, e2 in b:
            lo, hi = max(s, s2), min(e, e2)
            if hi > lo:
                out.append((lo, hi))
    return union(out)


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` where each counts ``weights`` (seconds of speech)."""
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    run = 0.0
    for v, w in pairs:
        run += w
        if run >= q * total - 1e-12:
            return float(v)
    return float(pairs[-1][0])


# -- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentIn:
    """What the quality of one segment is judged from (a row of ``segments``)."""

    segment_id: int
    start_s: float
    end_s: float
    text: str
    speaker: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    n_words: int | None = None  # from ``words``; None: counted in the text


def segment_flags(
    seg: SegmentIn,
    score: SegmentScore,
    ratio: float | None,
    clipped: float | None,
    speech: Sequence[tuple[float, float]] | None,
) -> tuple[list[str], list[str]]:
    """(flags, reasons) of one segment; ``speech``: the diarizer's merged speech of the file,
    None when there is no diarization to compare with."""
    flags: list[str] = []
    reasons: list[str] = []
    loop = repetition_loop(seg.text)
    if loop or (ratio is not None and ratio > HIGH_COMPRESSION_RATIO):
        flags.append("repetition")
        reasons.append(loop or f"compression ratio {ratio:.2f} > {HIGH_COMPRESSION_RATIO}")
    low = []
    if seg.avg_logprob is not None and seg.avg_logprob < LOW_AVG_LOGPROB:
        low.append(f"avg log-probability {seg.avg_logprob:.2f} < {LOW_AVG_LOGPROB}")
    if seg.no_speech_prob is not None and seg.no_speech_prob > HIGH_NO_SPEECH_PROB:
        low.append(f"no-speech probability {seg.no_speech_prob:.2f} > {HIGH_NO_SPEECH_PROB}")
    if low:
        flags.append("low_confidence")
        reasons.append("; ".join(low))
    if speech is not None and seg.text.strip() and seg.end_s > seg.start_s:
        inside = overlap_s((seg.start_s, seg.end_s), speech) / (seg.end_s - seg.start_s)
        if inside < MISMATCH_MAX_SPEECH:
            flags.append("speech_mismatch")
            reasons.append(f"text where the diarizer found no speech ({inside:.0%} of the segment is speech)")
    if score.bak is not None and score.bak < NOISY_BAK:
        flags.append("noisy")
        reasons.append(f"DNSMOS bak {score.bak:.2f} < {NOISY_BAK}")
    if clipped is not None and clipped > CLIPPED_SHARE:
        flags.append("clipped")
        reasons.append(f"{clipped:.2%} of samples at full scale (> {CLIPPED_SHARE:.1%})")
    return flags, reasons


def segment_quality_rows(
    segments: Sequence[SegmentIn],
    scores: Sequence[SegmentScore],
    samples: np.ndarray,
    speech: Sequence[tuple[float, float]] | None,
    sample_rate: int = SAMPLE_RATE,
) -> list[dict]:
    """One ``segment_quality`` row per segment (without batch_id / media_id)."""
    rows = []
    n = len(samples)
    for seg, score in zip(segments, scores, strict=True):
        a = min(max(int(round(seg.start_s * sample_rate)), 0), n)
        b = min(max(int(round(seg.end_s * sample_rate)), a), n)
        ratio = compression_ratio(seg.text)
        clipped = clipped_share(samples[a:b])
        flags, reasons = segment_flags(seg, score, ratio, clipped, speech)
        duration = seg.end_s - seg.start_s
        n_words = seg.n_words if seg.n_words is not None else len(_WORD.findall(seg.text))
        rows.append(
            {
                "segment_id": seg.segment_id,
                "start_s": float(seg.start_s),
                "end_s": float(seg.end_s),
                "speaker": seg.speaker,
                "dnsmos_sig": score.sig,
                "dnsmos_bak": score.bak,
                "dnsmos_ovrl": score.ovrl,
                "dnsmos_note": score.note,
                "avg_logprob": seg.avg_logprob,
                "no_speech_prob": seg.no_speech_prob,
                "compression_ratio": ratio,
                "words_per_s": n_words / duration if duration > 0 else 0.0,
                "flags": flags,
                "flag_reasons": reasons,
            }
        )
    return rows


def media_quality_values(
    rows: Sequence[dict],
    audio: AudioMeasures,
    duration_s: float,
    speech: Sequence[tuple[float, float]] | None,
    floor: float,
) -> dict:
    """The ``media_quality`` columns that describe the file (not its state): ``rows`` are the
    file's ``segment_quality`` rows; ``speech`` the diarizer's speech (None: no diarization,
    the segments' spans stand for the speech)."""
    seg_spans = union((r["start_s"], r["end_s"]) for r in rows)
    speech = union(speech) if speech is not None else seg_spans
    speech_s = total_s(speech)
    weights, values = [], []
    good = []
    for r in rows:
        if r["dnsmos_ovrl"] is None:
            continue
        w = overlap_s((r["start_s"], r["end_s"]), speech)
        weights.append(w)
        values.append(r["dnsmos_ovrl"])
        if r["dnsmos_ovrl"] >= floor:
            good.append((r["start_s"], r["end_s"]))
    weight = sum(weights)
    mean = sum(v * w for v, w in zip(values, weights, strict=True)) / weight if weight > 0 else None
    counts = {flag: sum(flag in r["flags"] for r in rows) for flag in ("repetition", "low_confidence")}
    counts |= {flag: sum(flag in r["flags"] for r in rows) for flag in ("speech_mismatch", "noisy", "clipped")}
    untranscribed = max(0.0, speech_s - total_s(intersect(speech, seg_spans)))
    flags = []
    if audio.telephone_band:
        flags.append("telephone_band")
    if audio.clipped_share is not None and audio.clipped_share > CLIPPED_SHARE:
        flags.append("clipped")
    if speech_s == 0:
        flags.append("no_speech")
    if not rows:
        flags.append("no_words")
    if untranscribed >= UNTRANSCRIBED_SPEECH_S and untranscribed >= UNTRANSCRIBED_SPEECH_SHARE * speech_s:
        flags.append("speech_without_text")
    if rows and weight == 0:
        flags.append("no_dnsmos")
    return {
        "duration_s": float(duration_s),
        "loudness_lufs": audio.loudness_lufs,
        "true_peak_dbtp": audio.true_peak_dbtp,
        "clipped_share": audio.clipped_share,
        "bandwidth_hz": audio.bandwidth_hz,
        "telephone_band": audio.telephone_band,
        "speech_s": speech_s,
        "speech_share": min(1.0, speech_s / duration_s) if duration_s > 0 else None,
        "untranscribed_speech_s": untranscribed,
        "dnsmos_ovrl_mean": None if mean is None else min(5.0, max(1.0, mean)),
        "dnsmos_ovrl_p10": weighted_quantile(values, weights, 0.10) if weight > 0 else None,
        "quality_floor": float(floor),
        "speech_above_floor_s": min(speech_s, total_s(intersect(speech, union(good)))),
        "n_segments": len(rows),
        **{f"n_{flag}": count for flag, count in counts.items()},
        "flags": flags,
    }

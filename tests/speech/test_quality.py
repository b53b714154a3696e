"""Segment and file quality (``speech/quality.py``) on real speech: DNSMOS falls as noise
rises, a telephone-band copy and a clipped copy are flagged, a repetition loop is flagged,
files without words say so, and a segment too short for DNSMOS gets null scores and a reason.

Real speech: pyannote.audio's sample (always installed; a real call recorded at 8 kHz, so it
is itself telephone band) and, where fetched (``make real-speech``), an AMI excerpt (16 kHz,
wideband)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.signal import resample_poly

from opentranscribe_pipeline.schemas import SegmentQuality, conform
from opentranscribe_pipeline.speech import quality as q
from opentranscribe_pipeline.speech.decode import decode

from ..conftest import SAMPLE_DROP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

import real_speech  # noqa: E402

SR = q.SAMPLE_RATE


@pytest.fixture(scope="module")
def dnsmos():
    with q.dnsmos_session() as model:
        yield model


@pytest.fixture(scope="module")
def call() -> np.ndarray:
    """pyannote's sample: 30 s of two people on a phone line (found without importing
    pyannote.audio, which takes half a minute on a loaded machine)."""
    import importlib.util

    folder = Path(next(iter(importlib.util.find_spec("pyannote.audio").submodule_search_locations)))
    return real_speech._load(folder / "sample" / "sample.wav")


@pytest.fixture(scope="module")
def wideband() -> tuple[str, np.ndarray]:
    """A wideband real recording (an AMI excerpt) if fetched, else a sample-archive file."""
    files = real_speech.pyannote_debug_set()
    if files:
        f = next(f for f in files if f.name == "ami-debug-trn03")
        return f.name, f.samples.astype(np.float32)
    return "meeting-02.flac", decode(str(SAMPLE_DROP / "meeting-02.flac")).samples


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    y = x + noise * np.sqrt(np.mean(x.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
    return (y / max(1.0, np.abs(y).max())).astype(np.float32)


def test_dnsmos_falls_as_noise_rises(dnsmos, call):
    """The same real speech (one 9.01 s window of it) mixed with white noise at falling SNR
    gets falling ovrl and bak."""
    snrs = [40, 20, 10, 5, 0]
    speech = call[: q.DNSMOS_WINDOW]
    scores = [q.score_segments(dnsmos, _with_noise(speech, snr), [(0.0, q.DNSMOS_WINDOW_S)])[0] for snr in snrs]
    ovrl = [s.ovrl for s in scores]
    bak = [s.bak for s in scores]
    assert all(a > b for a, b in zip(ovrl, ovrl[1:])), ovrl
    assert all(a > b for a, b in zip(bak, bak[1:])), bak
    assert ovrl[0] - ovrl[-1] > 1.0, ovrl  # not a drift: clean speech to 0 dB SNR is a large drop
    assert all(1 <= v <= 5 for s in scores for v in (s.sig, s.bak, s.ovrl))
    # the noisy end is flagged, the clean one is not
    seg = q.SegmentIn(0, 0.0, 30.0, "words")
    assert "noisy" in q.segment_flags(seg, scores[-1], None, 0.0, None)[0]
    assert "noisy" not in q.segment_flags(seg, scores[0], None, 0.0, None)[0]


def test_one_window_per_9_s_of_each_speakers_speech(dnsmos, call):
    """Windows are cut from each speaker's own speech: three 4 s segments of one speaker take
    two windows, not three; A, B, A take two (A's segments share one); three speakers three."""
    spans = [(i * 4.5, i * 4.5 + 4.0) for i in range(3)]
    for speakers, windows in ((["A"] * 3, 2), (["A", "B", "A"], 2), (["A", "B", "C"], 3)):
        before = dnsmos.windows_scored
        scores = q.score_segments(dnsmos, call, spans, speakers)
        assert dnsmos.windows_scored - before == windows, speakers
        assert all(s.ovrl is not None and s.note is None for s in scores)


def test_a_stride_scores_fewer_windows_and_says_which_segments_it_left(dnsmos, call):
    """``stride`` 2: one window in two of a speaker's speech (the first and the last always);
    a segment in none of them is null and says why."""
    spans = [(i * 2.0, i * 2.0 + 1.9) for i in range(15)]  # 28.5 s of one speaker: 4 windows
    before = dnsmos.windows_scored
    full = q.score_segments(dnsmos, call, spans, ["A"] * 15)
    assert dnsmos.windows_scored - before == 4 and all(s.ovrl is not None for s in full)
    before = dnsmos.windows_scored
    half = q.score_segments(dnsmos, call, spans, ["A"] * 15, stride=3)
    assert dnsmos.windows_scored - before == 2  # windows 0 and 3 of 0-3
    left = [s for s in half if s.ovrl is None]
    assert left and all("one window in 3" in s.note for s in left)
    kept = [(a.ovrl, b.ovrl) for a, b in zip(full, half) if b.ovrl is not None]
    assert kept and all(abs(a - b) < 0.5 for a, b in kept)


def test_a_segment_too_short_for_dnsmos_gets_null_scores_and_a_reason(dnsmos, call):
    spans = [(1.0, 2.2), (5.0, 13.0), (20.0, 20.0)]
    scores = q.score_segments(dnsmos, call, spans, ["SPEAKER_00", "SPEAKER_01", "SPEAKER_01"])
    short, long_, empty = scores
    assert (short.sig, short.bak, short.ovrl) == (None, None, None)
    assert "too short for DNSMOS" in short.note and "1.20 s" in short.note and "SPEAKER_00" in short.note
    assert long_.ovrl is not None and long_.note is None
    assert empty.ovrl is None and "no audio" in empty.note
    rows = q.segment_quality_rows(
        [q.SegmentIn(i, s, e, "hello there", spk) for i, ((s, e), spk) in enumerate(zip(spans, ["A", "B", "A"]))],
        scores,
        call,
        None,
    )
    df = conform(pl.DataFrame(rows).with_columns(batch_id=pl.lit("b"), media_id=pl.lit("a" * 64)), SegmentQuality)
    SegmentQuality.validate(df)
    assert df["dnsmos_ovrl"].null_count() == 2 and df["dnsmos_note"].null_count() == 1


def test_telephone_band_copy_is_flagged(call, wideband):
    name, x = wideband
    own = q.measure_audio(x)
    assert own.telephone_band is False and own.bandwidth_hz > 6000, (name, own)
    narrow = resample_poly(resample_poly(x, 1, 2), 2, 1).astype(np.float32)  # through 8 kHz and back
    copy = q.measure_audio(narrow)
    assert copy.telephone_band is True and copy.bandwidth_hz <= 4500, (name, copy)
    # the source's own rate bounds what it can hold
    assert q.measure_audio(x, source_rate=8000).telephone_band is True
    # pyannote's sample is a real 8 kHz call
    assert q.measure_audio(call).telephone_band is True
    values = q.media_quality_values([], copy, len(narrow) / SR, [], 3.0)
    assert "telephone_band" in values["flags"]


def test_clipped_copy_is_flagged(wideband):
    _, x = wideband
    clean = q.measure_audio(x)
    assert clean.clipped_share < q.CLIPPED_SHARE and clean.true_peak_dbtp < 0
    loud = np.clip(x / np.abs(x).max() * 4.0, -1.0, 1.0).astype(np.float32)  # 12 dB too hot
    hot = q.measure_audio(loud)
    assert hot.clipped_share > q.CLIPPED_SHARE, hot
    assert hot.true_peak_dbtp > -0.1  # at or over full scale between the samples
    assert hot.loudness_lufs > clean.loudness_lufs + 6
    values = q.media_quality_values([], hot, len(loud) / SR, None, 3.0)
    assert "clipped" in values["flags"]
    seg = q.SegmentIn(0, 0.0, len(loud) / SR, "words")
    none = q.SegmentScore(None, None, None, "n/a")
    [row] = q.segment_quality_rows([seg], [none], loud, None)
    assert "clipped" in row["flags"] and "full scale" in row["flag_reasons"][row["flags"].index("clipped")]
    [row] = q.segment_quality_rows([seg], [none], x, None)
    assert "clipped" not in row["flags"]


LOOP = "and then we went to the market and then we went to the market and then we went to the market"


@pytest.mark.parametrize(
    ("text", "looped"),
    [
        (LOOP, True),
        ("Thank you. Thank you. Thank you. Thank you.", True),
        ("the the the the the the", True),
        ("No, no, no, that is not what I said.", False),  # people repeat a word
        ("We visited twelve villages over three summers and recorded the elders.", False),
        ("Yes. Yes, we did it again, and again.", False),
    ],
)
def test_repetition_loop(text, looped):
    found = q.repetition_loop(text)
    assert (found is not None) == looped, found
    seg = q.SegmentIn(0, 0.0, 10.0, text, avg_logprob=-0.3)
    [row] = q.segment_quality_rows([seg], [q.SegmentScore(3.5, 4.0, 3.2, None)], np.zeros(10 * SR, np.float32), None)
    assert ("repetition" in row["flags"]) == looped
    assert row["compression_ratio"] == pytest.approx(q.compression_ratio(text))


def test_whisper_compression_ratio_flags_a_loop_too():
    text = "ha" * 200  # no word boundary to find, but it compresses like a loop
    assert q.repetition_loop(text) is None
    flags, reasons = q.segment_flags(q.SegmentIn(0, 0, 5, text), q.SegmentScore(None, None, None, "x"), 40.0, 0, None)
    assert flags == ["repetition"] and "compression ratio" in reasons[0]


def test_low_confidence_and_speech_mismatch():
    score = q.SegmentScore(3.5, 4.0, 3.2, None)
    speech = q.union([(0.0, 4.0), (10.0, 12.0)])
    seg = q.SegmentIn(0, 5.0, 9.0, "words nobody said", "SPEAKER_00", avg_logprob=-1.4, no_speech_prob=0.9)
    flags, reasons = q.segment_flags(seg, score, 1.1, 0.0, speech)
    assert flags == ["low_confidence", "speech_mismatch"]
    assert "-1.40" in reasons[0] and "0.90" in reasons[0] and "no speech" in reasons[1]
    inside = q.SegmentIn(1, 0.5, 3.5, "words said", "SPEAKER_00", avg_logprob=-0.2)
    assert q.segment_flags(inside, score, 1.1, 0.0, speech) == ([], [])
    assert q.segment_flags(seg, score, 1.1, 0.0, None)[0] == ["low_confidence"]  # no diarization: no judgement


def test_speech_without_text_and_files_without_words_say_so(call):
    """Noise and music: the transcriber gives no words (``test_language``); the file's row says
    so (``no_words``), and the diarizer's speech no segment holds is counted and flagged."""
    rng = np.random.default_rng(3)
    noise = (rng.standard_normal(20 * SR) * 0.05).astype(np.float32)
    for samples, speech in ((noise, []), (call, [(0.0, 12.0), (14.0, 28.0)])):
        audio = q.measure_audio(samples)
        values = q.media_quality_values([], audio, len(samples) / SR, speech, 3.0)
        assert "no_words" in values["flags"]
        assert values["n_segments"] == 0 and values["dnsmos_ovrl_mean"] is None
        assert values["speech_above_floor_s"] == 0.0
        if speech:
            assert values["speech_s"] == pytest.approx(26.0)
            assert values["untranscribed_speech_s"] == pytest.approx(26.0)
            assert "speech_without_text" in values["flags"]
        else:
            assert "no_speech" in values["flags"] and values["speech_share"] == 0.0
        assert audio.loudness_lufs is not None  # the audio is still measured


def test_media_values_weigh_dnsmos_by_speech_and_count_the_floor():
    def row(i, s, e, ovrl, flags=()):
        return {
            "segment_id": i,
            "start_s": s,
            "end_s": e,
            "dnsmos_ovrl": ovrl,
            "flags": list(flags),
        }

    rows = [row(0, 0, 10, 4.0), row(1, 10, 12, 2.0, ["noisy"]), row(2, 12, 13, None), row(3, 20, 30, 3.0, ["noisy"])]
    audio = q.AudioMeasures(-23.0, -1.0, 0.0, 8000.0, False)
    v = q.media_quality_values(rows, audio, 40.0, [(0, 13), (20, 25)], 3.0)
    assert v["speech_s"] == pytest.approx(18.0)
    assert v["speech_share"] == pytest.approx(18.0 / 40.0)
    # weights: 10 s at 4.0, 2 s at 2.0, 5 s (inside speech) at 3.0
    assert v["dnsmos_ovrl_mean"] == pytest.approx((40 + 4 + 15) / 17)
    assert v["dnsmos_ovrl_p10"] == 2.0
    assert v["speech_above_floor_s"] == pytest.approx(15.0)  # 0-10 and 20-25
    assert v["n_noisy"] == 2 and v["n_segments"] == 4 and v["flags"] == []
    # without a diarization the segments stand for the speech
    v = q.media_quality_values(rows, audio, 40.0, None, 3.5)
    assert v["speech_s"] == pytest.approx(23.0) and v["speech_above_floor_s"] == pytest.approx(10.0)


def test_int8_run_stays_near_the_model_as_shipped(dnsmos, call, wideband):
    """The default int8 run (conv2d_1-3, their ReLUs and the pooling quantized) against the
    fp32 model on real speech, clean and under noise: within 0.1 on every score (measured on
    99 windows: ovrl mean |d| 0.013, max 0.057; benchmarks/dnsmos_variants.py)."""
    assert dnsmos.variant == "int8"
    wins = np.stack([call[: q.DNSMOS_WINDOW], _with_noise(wideband[1][: q.DNSMOS_WINDOW], 5)])
    with q.dnsmos_session(variant="fp32") as fp32:
        reference = fp32.score(wins)
    assert np.abs(dnsmos.score(wins) - reference).max() < 0.1


def test_quality_resource_fields_hold_what_a_run_uses(monkeypatch):
    """The UI shows the values a run uses: the floor from the settings (not None), one thread."""
    from opentranscribe_pipeline.resources.quality import QualityModelResource

    monkeypatch.setenv("OPENTRANSCRIBE_QUALITY_FLOOR", "2.5")
    resource = QualityModelResource()
    assert (resource.floor, resource.threads, resource.dnsmos_variant) == (2.5, q.DNSMOS_THREADS, "int8")
    assert "floor=2.5" in resource.model_version() and "relu" in resource.model_name()
    monkeypatch.delenv("OPENTRANSCRIBE_QUALITY_FLOOR")
    assert QualityModelResource().floor == 3.0
    with pytest.raises(ValueError):
        QualityModelResource(floor=0.5)

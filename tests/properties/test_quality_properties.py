"""The row-producing functions of ``speech/quality.py`` on generated segments, scores, turns
and audio: every row passes the ``segment_quality`` / ``media_quality`` schemas, flags come
with one reason each, and the media columns keep their promises (speech above the floor
within the speech, the DNSMOS mean and p10 within the scores, counts that match the rows)."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.assets.quality import segment_frame
from opentranscribe_pipeline.schemas import QUALITY_FLAGS, MediaQuality, SegmentQuality, conform, utc_now
from opentranscribe_pipeline.speech import quality as q

from .strategies import BATCH, MEDIA_A

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DURATION = 8.0
SR = q.SAMPLE_RATE

WORDS = st.sampled_from(["the", "market", "and", "then", "we", "went", "ha", "no", "yes", "to", ""])
scores = st.one_of(
    st.builds(q.SegmentScore, *(st.floats(1.0, 5.0),) * 3, st.none()),
    st.builds(q.SegmentScore, st.none(), st.none(), st.none(), st.just("too short for DNSMOS")),
)


@st.composite
def files(draw):
    n = draw(st.integers(0, 6))
    cuts = sorted(draw(st.lists(st.floats(0.0, DURATION), min_size=2 * n, max_size=2 * n)))
    segs, file_scores = [], []
    for i in range(n):
        s, e = cuts[2 * i], cuts[2 * i + 1]
        text = " ".join(draw(st.lists(WORDS, max_size=20)))
        segs.append(
            q.SegmentIn(
                segment_id=i,
                start_s=s,
                end_s=e,
                text=text,
                speaker=draw(st.sampled_from([None, "SPEAKER_00", "SPEAKER_01"])),
                avg_logprob=draw(st.none() | st.floats(-3.0, 0.0)),
                no_speech_prob=draw(st.none() | st.floats(0.0, 1.0)),
                n_words=draw(st.none() | st.integers(0, 30)),
            )
        )
        file_scores.append(draw(scores))
    turns = draw(
        st.none()
        | st.lists(st.tuples(st.floats(0.0, DURATION), st.floats(0.0, 3.0)).map(lambda t: (t[0], t[0] + t[1])))
    )
    gain = draw(st.sampled_from([0.0, 0.1, 0.5, 4.0]))
    seed = draw(st.integers(0, 2**16))
    return segs, file_scores, turns, gain, seed


def _audio(gain: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(DURATION * SR)) * gain
    return np.clip(x, -1.0, 1.0).astype(np.float32)


@SETTINGS
@given(files(), st.floats(1.0, 5.0))
def test_rows_pass_the_schemas_and_keep_their_promises(file, floor):
    segs, file_scores, turns, gain, seed = file
    samples = _audio(gain, seed)
    speech = q.union(turns) if turns is not None else None
    rows = q.segment_quality_rows(segs, file_scores, samples, speech)
    assert len(rows) == len(segs)
    for row in rows:
        assert len(row["flags"]) == len(row["flag_reasons"]) and set(row["flags"]) <= set(QUALITY_FLAGS)
        assert (row["dnsmos_ovrl"] is None) == (row["dnsmos_note"] is not None)
    df = segment_frame(BATCH, MEDIA_A, rows)  # what the step writes
    SegmentQuality.validate(df, lazy=True)

    audio = q.measure_audio(samples)
    values = q.media_quality_values(rows, audio, DURATION, speech, floor)
    state = {
        **values,
        "batch_id": BATCH,
        "media_id": MEDIA_A,
        "status": "ok",
        "error": None,
        "audio_s": DURATION,
        "elapsed_s": 0.1,
        "model": "dnsmos-p835",
        "model_version": "v",
        "source_digest": "d",
        "processed_at": utc_now(),
    }
    MediaQuality.validate(conform(pl.DataFrame([state]), MediaQuality), lazy=True)

    assert values["speech_above_floor_s"] <= values["speech_s"] + 1e-9
    assert values["untranscribed_speech_s"] <= values["speech_s"] + 1e-9
    scored = [r["dnsmos_ovrl"] for r in rows if r["dnsmos_ovrl"] is not None]
    if values["dnsmos_ovrl_mean"] is not None:
        assert min(scored) - 1e-9 <= values["dnsmos_ovrl_p10"] <= max(scored) + 1e-9
        assert min(scored) - 1e-9 <= values["dnsmos_ovrl_mean"] <= max(scored) + 1e-9
    if not any(r["dnsmos_ovrl"] is not None and r["dnsmos_ovrl"] >= floor for r in rows):
        assert values["speech_above_floor_s"] == 0.0
    for flag in QUALITY_FLAGS:
        assert values[f"n_{flag}"] == sum(flag in r["flags"] for r in rows)
    assert ("no_words" in values["flags"]) == (not rows)
    if gain == 0.0:
        assert audio.loudness_lufs is None and audio.true_peak_dbtp is None and audio.bandwidth_hz is None
    if gain == 4.0:
        assert "clipped" in values["flags"]


@SETTINGS
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)).map(lambda t: (t[0], t[0] + t[1])), max_size=12))
def test_union_and_overlap_agree(spans):
    merged = q.union(spans)
    assert all(a < b for a, b in merged)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(merged, merged[1:]))
    for s, e in spans:
        if e > s:
            assert abs(q.overlap_s((s, e), merged) - (e - s)) < 1e-9
    assert abs(q.total_s(q.intersect(merged, merged)) - q.total_s(merged)) < 1e-9

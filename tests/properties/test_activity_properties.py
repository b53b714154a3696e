"""Speech activity (``speech/activity.py``, and the energy check in ``speech/decode.py``) on
generated inputs: the islands :func:`speech_islands` cuts are sorted, disjoint, non-empty,
inside ``[0, total_s]``, respect both minimum durations, start on a frame above the onset,
lose no frame above the onset, and equal pyannote's ``Binarize`` (what WhisperX's VAD runs)
wherever that applies; a :class:`SpeechActivity` survives its byte form unchanged.

Inputs cover: no frames, one frame, all silence, all speech, NaN scores, scores exactly at
the onset and the offset, very short (one frame) and very long (hundreds of frames) islands,
frames that overlap (window longer than the step) or leave gaps (shorter), a negative start,
and ``total_s`` cutting into the first or last island. Times are on the 1/64 s grid of
``strategies.py``, so frame times and durations are exact.

Neither function makes table rows (no pandera schema applies); the energy check's share is
the ``media`` table's ``active_fraction``, whose schema bounds it to [0, 1], checked here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.speech.activity import VAD_OFFSET, VAD_ONSET, SpeechActivity, speech_islands
from opentranscribe_pipeline.speech.decode import ACTIVITY_FRAME, SILENCE_RMS, activity

from .strategies import TICK, secs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# per-frame scores: silence, speech, the thresholds themselves, just either side, NaN
SCORE = st.sampled_from(
    [0.0, 0.1, VAD_OFFSET - 1e-6, VAD_OFFSET, 0.45, VAD_ONSET, VAD_ONSET + 1e-6, 0.8, 1.0, math.nan]
)


@st.composite
def score_runs(draw) -> np.ndarray:
    """Scores as runs of one value: islands of one frame up to hundreds, long silences."""
    runs = draw(
        st.lists(st.tuples(SCORE, st.one_of(st.just(1), st.integers(2, 20), st.integers(100, 400))), max_size=12)
    )
    return np.array([v for v, n in runs for _ in range(n)], dtype=np.float32)


SCORES = st.one_of(
    st.just(np.zeros(0, np.float32)),  # no frames
    st.builds(lambda v: np.array([v], np.float32), SCORE),  # one frame
    st.integers(0, 300).map(lambda n: np.zeros(n, np.float32)),  # all silence
    st.integers(1, 300).map(lambda n: np.ones(n, np.float32)),  # all speech
    score_runs(),
    st.lists(SCORE, max_size=60).map(lambda v: np.array(v, np.float32)),  # frame by frame
)


@st.composite
def frames(draw) -> dict:
    """A sliding window: start (may be negative), step and window duration on the grid."""
    step = secs(draw(st.integers(1, 64)))
    return {
        "start": secs(draw(st.integers(-64, 640))),
        "step": step,
        "duration": secs(draw(st.integers(1, 640))),  # shorter than the step: gaps; longer: overlap
    }


def _times(n: int, w: dict) -> np.ndarray:
    return w["start"] + np.arange(n) * w["step"] + w["duration"] / 2


def _binarize(scores: np.ndarray, w: dict) -> list[tuple[float, float]]:
    """pyannote's Binarize as WhisperX's VAD applies it (``merge_chunks`` without the split
    at the chunk size), clipped to times >= 0."""
    from pyannote.core import SlidingWindow, SlidingWindowFeature
    from whisperx.vads.pyannote import Binarize

    feature = SlidingWindowFeature(
        scores.reshape(-1, 1), SlidingWindow(start=w["start"], duration=w["duration"], step=w["step"])
    )
    regions = [(s.start, s.end) for s in Binarize(onset=VAD_ONSET, offset=VAD_OFFSET)(feature).get_timeline()]
    return [(max(a, 0.0), b) for a, b in regions if b > max(a, 0.0)]  # media time starts at 0


@SETTINGS
@given(
    scores=SCORES,
    w=frames(),
    min_on=st.sampled_from([0.0, TICK, 0.25, 1.0]),
    min_off=st.sampled_from([0.0, TICK, 0.5, 2.0]),
    total=st.one_of(st.none(), st.integers(0, 6400).map(secs)),
)
@example(
    scores=np.zeros(0, np.float32), w={"start": 0.0, "step": 0.25, "duration": 5.0}, min_on=0.0, min_off=0.0, total=None
)
@example(
    scores=np.array([1.0], np.float32),
    w={"start": 0.0, "step": 0.25, "duration": 5.0},
    min_on=0.0,
    min_off=0.0,
    total=None,
)
@example(
    scores=np.array([0, 1, 0, 0, 1, 1, 0], np.float32),
    w={"start": 0.0, "step": 1.0, "duration": 1.0},
    min_on=1.0,
    min_off=2.0,
    total=4.0,
)
def test_islands_are_sorted_disjoint_bounded_and_keep_every_speech_frame(scores, w, min_on, min_off, total):
    islands = speech_islands(
        scores, w["start"], w["step"], w["duration"], min_duration_on=min_on, min_duration_off=min_off, total_s=total
    )
    hi = math.inf if total is None else total
    for a, b in islands:
        assert 0.0 <= a < b <= hi  # non-empty, inside [0, total_s]
        assert b - a >= min_on  # the minimum speech duration holds
    for (_, b), (a2, _) in zip(islands, islands[1:]):
        assert a2 > b and a2 - b >= min_off  # sorted, disjoint, no gap under the minimum silence
    t = _times(scores.size, w)
    speech = np.nan_to_num(scores, nan=0.0) > VAD_ONSET
    for a, _ in islands:  # an island opens on a frame above the onset (or where total_s cut it)
        if a > 0.0:
            assert any(abs(t[i] - a) < 1e-9 and speech[i] for i in range(scores.size)), (a, scores)
    if min_on == 0.0 and total is None:
        # no frame above the onset is lost (but the very last one, which starts nothing)
        for i in np.flatnonzero(speech[:-1]):
            assert any(a - 1e-9 <= t[i] <= b + 1e-9 for a, b in islands), (t[i], islands)


@SETTINGS
@given(scores=SCORES, w=frames())
@example(scores=np.array([math.nan, 1.0, math.nan, 0.2], np.float32), w={"start": 0.0, "step": 0.25, "duration": 5.0})
def test_islands_are_what_whisperx_vad_binarizes(scores, w):
    ours = speech_islands(scores, w["start"], w["step"], w["duration"])
    if scores.size:  # pyannote needs a frame
        theirs = _binarize(np.nan_to_num(scores, nan=0.0), w)
        assert len(ours) == len(theirs) and np.allclose(ours, theirs, atol=1e-9, rtol=0), (ours, theirs)
    else:
        assert ours == []


@SETTINGS
@given(scores=SCORES, w=frames(), num_samples=st.integers(0, 10**8))
def test_an_activity_survives_its_byte_form(scores, w, num_samples):
    a = SpeechActivity(scores.reshape(-1, 1), w["start"], w["duration"], w["step"], num_samples, "0123456789abcdef")
    back = SpeechActivity.from_bytes(a.to_bytes())
    assert back.scores.dtype == np.float32 and back.scores.shape == a.scores.shape
    assert np.array_equal(back.scores, a.scores, equal_nan=True)
    assert (back.start, back.duration, back.step, back.num_samples, back.fingerprint) == (
        a.start,
        a.duration,
        a.step,
        a.num_samples,
        a.fingerprint,
    )
    assert back.islands() == a.islands()


# -- the energy check of ingest (speech/decode.py:activity) ----------------------------------


@st.composite
def signals(draw) -> np.ndarray:
    """Silence, quiet and loud bursts; lengths from 0 samples to several 1-minute blocks."""
    kind = draw(st.sampled_from(["empty", "one", "short", "bursts", "long"]))
    if kind == "empty":
        return np.zeros(0, np.float32)
    if kind == "one":
        return np.array([draw(st.sampled_from([0.0, 1e-4, 0.5, -1.0]))], np.float32)
    n = {"short": draw(st.integers(2, ACTIVITY_FRAME * 3)), "bursts": draw(st.integers(1, 200)) * ACTIVITY_FRAME}.get(
        kind, 2_000 * ACTIVITY_FRAME * 2 + draw(st.integers(0, ACTIVITY_FRAME))
    )
    x = np.zeros(n, np.float32)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for _ in range(draw(st.integers(0, 6))):
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 4 * ACTIVITY_FRAME)))
        x[a:b] = rng.normal(0, draw(st.sampled_from([1e-5, SILENCE_RMS, 1e-2, 0.3])), b - a)
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=signals())
def test_the_energy_check_is_the_share_of_loud_frames(x):
    share = activity(x)
    n = len(x) // ACTIVITY_FRAME
    if n:
        frames_ = x[: n * ACTIVITY_FRAME].reshape(n, ACTIVITY_FRAME).astype(np.float64)
        expected = np.count_nonzero(np.sum(frames_**2, axis=1) > SILENCE_RMS**2 * ACTIVITY_FRAME) / n
    else:
        expected = float(len(x) > 0 and np.sqrt(np.mean(x.astype(np.float64) ** 2)) > SILENCE_RMS)
    assert share == pytest.approx(expected, abs=1e-12)
    # what the media table's active_fraction takes: a share in [0, 1], 0 for digital silence
    assert 0.0 <= share <= 1.0
    if not np.any(x):
        assert share == 0.0

"""Issue 30: real people taking turns within a file are told apart, one person with pauses
stays one speaker.

Built from real speech that ships in packages (``tests/data/real_speech.py``: the AMI excerpts
of pyannote.audio's source distribution and its sample) with the real-speech drop generator's
own composition (``tests/data/make_real_speech_drop.py``): people from *different* recordings
taking turns of 1-8 s with 0.2-1.0 s of silence between turns, and one person's speech cut into
pieces with pauses. Each file is 30-40 s; diarization only (no ASR).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ..data import make_real_speech_drop as mrd
from ..data import real_speech
from ..der import der

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def people():
    files = real_speech.pyannote_debug_set()
    if files is None:  # `make test` fetches them first; CI must not go green without them
        reason = "pyannote.audio's source distribution (AMI excerpts) could not be fetched with pip"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)
    return mrd.voices_of([*files, real_speech.pyannote_sample()])


@pytest.fixture(scope="module")
def diarizer():
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    with Diarizer(DiarizationOptions()) as d:
        yield d


def _construction(people, seed: int, k: int, n_turns: int, gap: tuple[float, float], max_s: float):
    """``k`` people from different recordings (``k`` = 1: one person) taking ``n_turns`` turns,
    re-drawn (same seed sequence) until the file is at most ``max_s`` long."""
    voices, recording, talkers = people
    rng = np.random.default_rng(seed)
    while True:
        who = mrd.strangers(rng, talkers, recording, k) if k > 1 else [talkers[int(rng.integers(len(talkers)))]]
        audio, truth = mrd._compose(rng, who, voices, n_turns, gap, False, cycle=k > 1)
        if audio.size <= max_s * mrd.SR:
            return audio, truth


# Issue 30 is not closed. The split of local speakers at their pauses is experimental and off
# by default (OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES): with it, the alternations of
# benchmarks/speakers_quality.py --constructions are told apart (2p-02: 1 -> 2 speakers, DER
# 0.451 -> 0.096), but this 2-person construction still came out as 5 speakers, the pauses
# (digital silence) are still held as speech by the segmentation, and it costs 1.4x. The goal
# is kept here, strict: the day the default diarizer reaches it, these fail and must become
# plain tests.
OPEN = pytest.mark.xfail(strict=True, reason="issue 30 open: DER <= 5% on real alternations not reached yet")


@OPEN
@pytest.mark.parametrize("k, n_turns", [(2, 10), (3, 9)])
def test_real_people_taking_turns_with_pauses_are_told_apart(people, diarizer, k, n_turns):
    audio, truth = _construction(people, 30 + k, k, n_turns, (0.2, 1.0), 40.0)
    d = diarizer.diarize(audio)
    error = der(d.turns, truth)
    assert len(d.speakers) == k, (d.speakers, error)
    assert error <= 0.05, error


def test_one_real_person_with_many_pauses_stays_one_speaker(people, diarizer):
    audio, truth = _construction(people, 33, 1, 7, (0.5, 3.0), 40.0)
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 1, d.turns
    assert der(d.turns, truth) <= 0.05


def test_a_local_speaker_is_split_at_its_pauses_and_at_the_signals():
    """The split itself: a window's local speaker active over two stretches (0.5 s apart) is
    two islands, a 0.1 s blip joins its nearer neighbour, a stretch the signal says is silent
    splits a track the scores hold active, and the columns add up to the scores."""
    from opentranscribe_pipeline.speech.diarize import quiet_frames, split_at_pauses

    frame_s = 0.05
    d = np.zeros((2, 100, 3), np.float32)
    d[0, 5:30, 0] = 0.9
    d[0, 40:70, 0] = 0.8
    d[0, 72:74, 0] = 0.9  # 0.1 s: too short to embed, joins the island before it
    d[0, 80:95, 1] = 0.7
    d[1, 0:100, 2] = 0.9  # active throughout: the signal's pause splits it
    pauses = np.zeros((2, 100), bool)
    pauses[1, 45:55] = True
    out = split_at_pauses(d, 0.4, frame_s, 0.15, 0.5, pauses)
    assert np.allclose(out.sum(axis=2), d.sum(axis=2))
    spans = [
        [
            (int(np.flatnonzero(out[c, :, k] > 0.4)[0]), int(np.flatnonzero(out[c, :, k] > 0.4)[-1]))
            for k in range(out.shape[2])
            if (out[c, :, k] > 0.4).any()
        ]
        for c in range(2)
    ]
    assert spans[0] == [(5, 29), (40, 73), (80, 94)]
    assert spans[1] == [(0, 49), (50, 99)]
    # pauses of the signal: digital silence and a -60 dBFS bed between two loud stretches
    rng = np.random.default_rng(0)
    loud = rng.normal(0, 0.1, 16000).astype(np.float32)
    audio = np.concatenate(
        [loud, np.zeros(8000, np.float32), loud, rng.normal(0, 0.001, 1600).astype(np.float32), loud]
    )
    quiet = quiet_frames(audio, 0.15)
    assert quiet[101:149].all() and not quiet[:99].any() and not quiet[151:250].any()
    assert not quiet[255:265].any()  # 0.1 s: shorter than a pause

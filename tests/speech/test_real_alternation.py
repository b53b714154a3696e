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
from ..der import der, der_parts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def people():
    files = real_speech.pyannote_debug_set()
    if files is None:  # `make test` fetches them first; CI must not go green without them
        reason = "pyannote.audio's source distribution (AMI excerpts) could not be fetched with pip"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)
    return mrd.voices_of([*files, real_speech.pyannote_sample()])


@pytest.fixture(scope="module", params=["3.0", "whisperx"])
def diarizer(request):
    """The packaged diarizer with each segmentation model (``OPENTRANSCRIBE_DIARIZATION_SEGMENTATION``,
    read when it loads): segmentation-3.0, the default, and the 2021 checkpoint of whisperx."""
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENTRANSCRIBE_DIARIZATION_SEGMENTATION", request.param)
        d = Diarizer(DiarizationOptions())
        d.load()
    try:
        yield d
    finally:
        d.close()


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


# Issue 30 is not closed. The default diarizer (segmentation-3.0, a window every 1.5 s) gets the
# 3-person construction of seed 33 and the 2-person one of seed 32 right in count, the first at
# DER under 5%, the second at 0.12, all of it missed speech: a 2 s pause (-53 to -75 dBFS) inside
# one person's AMI reference turn (test_two_real_people_are_two_speakers). With the 2021
# checkpoint (``whisperx``) the local speakers are split at their pauses (speech/islands.py),
# clustered at 0.52, joined when their whole voices are one person's and cut at digital silence:
# the 3-person construction reaches the goal, the 2-person one does not (one person's short
# turns come out as four speakers at cosine 0.32-0.49 to each other, under the join threshold
# that keeps different AMI people apart). The goal is kept strict: the day a diarizer reaches it
# there, that case fails and must become a plain one.
OPEN = pytest.mark.xfail(strict=True, reason="issue 30 open: DER <= 5% on real alternations not reached yet")


@pytest.mark.parametrize(
    "diarizer, k, n_turns",
    # segmentation-3.0's 2-person case: test_two_real_people_are_two_speakers
    [("3.0", 3, 9), pytest.param("whisperx", 2, 10, marks=OPEN), ("whisperx", 3, 9)],
    indirect=["diarizer"],
)
def test_real_people_taking_turns_with_pauses_are_told_apart(people, diarizer, k, n_turns):
    audio, truth = _construction(people, 30 + k, k, n_turns, (0.2, 1.0), 40.0)
    d = diarizer.diarize(audio)
    error = der(d.turns, truth)
    assert len(d.speakers) == k, (d.speakers, error)
    assert error <= 0.05, error


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_two_real_people_are_two_speakers(people, diarizer):
    """What the default (segmentation-3.0) reaches on the 2-person case where the 2021
    checkpoint finds four speakers: the count, and no confusion or false alarm to speak of (what
    is left is missed speech, the quiet inside one person's turns)."""
    audio, truth = _construction(people, 32, 2, 10, (0.2, 1.0), 40.0)
    d = diarizer.diarize(audio)
    parts = der_parts(d.turns, truth)
    assert len(d.speakers) == 2, (d.speakers, parts)
    assert parts["confusion"] + parts["false alarm"] <= 0.02, parts


def test_one_real_person_with_many_pauses_stays_one_speaker(people, diarizer):
    audio, truth = _construction(people, 33, 1, 7, (0.5, 3.0), 40.0)
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 1, d.turns
    assert der(d.turns, truth) <= 0.05


def test_a_local_speaker_is_split_at_its_pauses_and_at_the_signals():
    """The split itself: a window's local speaker active over two stretches (0.5 s apart) is
    two islands, a 0.1 s blip joins its nearer neighbour, a stretch the signal says is silent
    splits a track the scores hold active, and the columns add up to the scores."""
    from opentranscribe_pipeline.speech.islands import quiet_frames, split_at_pauses

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


def test_a_local_speakers_islands_are_pooled_unless_they_disagree():
    """With the split, a window's local speaker whose islands hold one real person is embedded
    whole (its islands pooled as one, as unsplit), and one whose islands hold two real people
    (the pyannote sample's two speakers, 2.5 s each across a 0.5 s pause) keeps an embedding
    per island, each nearer its own person."""
    from opentranscribe_pipeline.speech.encoders.campplus import CamPlusEmbedding
    from opentranscribe_pipeline.speech.islands import ISLANDS

    from ..data import real_speech

    encoder = CamPlusEmbedding("cpu")
    sample = real_speech.pyannote_sample()
    a, b = (real_speech.cut(sample.samples, real_speech.exclusive_speech(sample, p)) for p in sample.speakers)
    n, pause = int(2.5 * 16000), np.zeros(8000, np.float32)
    step, duration, frames = 0.5, 5.0, 293
    starts = np.array([0.0, 0.5])
    t = starts[:, None] + (np.arange(frames) + 0.5) * duration / frames
    masks = np.zeros((2, frames, 3), np.float32)
    masks[:, :, 0] = t < 2.75  # the first island and half the pause
    masks[:, :, 1] = t >= 2.75  # the rest: the second island of the same local speaker
    owner = np.array([[0, 0, -1], [0, 0, -1]])
    agree = (ISLANDS["agree"], ISLANDS["agree_min_s"])
    voice_a, voice_b = encoder.embed_many([a, b])
    two = encoder.window_embeddings(np.concatenate([a[:n], pause, b[:n]]), masks, 0.0, step, duration, owner, agree)
    one = encoder.window_embeddings(
        np.concatenate([a[:n], pause, a[n : 2 * n]]), masks, 0.0, step, duration, owner, agree
    )
    for c in range(2):
        assert not np.allclose(two[c, 0], two[c, 1])
        assert two[c, 0] @ voice_a > two[c, 0] @ voice_b and two[c, 1] @ voice_b > two[c, 1] @ voice_a
        assert np.array_equal(one[c, 0], one[c, 1]) and one[c, 0] @ voice_a > one[c, 0] @ voice_b
        assert np.isnan(one[c, 2]).all()


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_the_speaker_count_options_are_honoured(people, diarizer):
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    audio, _ = _construction(people, 33, 3, 9, (0.2, 1.0), 40.0)  # three people
    for options, count_is_right in (
        (DiarizationOptions(num_speakers=2), lambda n: n == 2),
        (DiarizationOptions(max_speakers=2), lambda n: 1 <= n <= 2),
    ):
        forced = Diarizer(options)
        forced.pipeline, forced.encoder = diarizer.pipeline, diarizer.encoder
        speakers = forced.diarize(audio).speakers
        assert count_is_right(len(speakers)), (options, speakers)


def _ami_file(name: str):
    """The audio and reference turns of one AMI excerpt as recorded (``real_speech``)."""
    files = real_speech.pyannote_debug_set()
    if files is None:
        pytest.skip("the AMI excerpts are not fetched")
    f = next(f for f in files if f.name == name)
    return f.samples.astype(np.float32), [
        {"start_s": t.start_s, "end_s": t.end_s, "speaker": t.speaker} for t in f.turns
    ]


def _drop_file(seed: int, stem: str):
    """The audio and truth of one construction of the real-speech drop of ``seed``
    (``make_real_speech_drop``, as ``benchmarks/speakers_quality.py --constructions`` draws it)."""
    if real_speech.pyannote_debug_set() is None:
        pytest.skip("the AMI excerpts are not fetched")
    made = mrd.constructions(
        np.random.default_rng(seed), monologues=3, alternating=4, answering=2, between=mrd.container_draws
    )
    return next((a, t) for name, _, a, t in made if name == stem)


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_a_turn_the_clustering_gave_the_wrong_person_moves_to_the_right_one(diarizer):
    """The real-speech drop's seed-31 three-person alternation (``make_real_speech_drop``):
    the clustering puts its last turn (1.7 s of one person) under another person's label; that
    turn's own embedding is nearest its own person's voice, and it moves there
    (``turns.reassign_turns``; DER 0.055 without the move)."""
    audio, truth = _drop_file(31, "alternating-3p-03")
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 3, d.turns
    assert der(d.turns, truth) <= 0.01


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_quiet_speech_only_whisperxs_vad_hears_has_a_speaker(diarizer):
    """AMI ``tst01`` as recorded: quiet talkers that segmentation-3.0 scores as nobody for half of
    the reference's speech, and WhisperX's VAD (run in the same step for transcription) hears
    for most of it. That speech goes to the nearest speaker (``turns.unclaimed_speech``):
    missed speech 0.445 -> 0.125 of the reference, with no more false alarm."""
    audio, truth = _ami_file("ami-debug-tst01")
    d = diarizer.diarize(audio)
    parts = der_parts(d.turns, truth)
    assert parts["missed detection"] <= 0.2 and parts["false alarm"] <= 0.08, parts
    assert all(a.end_s <= b.start_s for a, b in zip(d.exclusive_turns, d.exclusive_turns[1:]))


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_two_people_answering_with_no_pause_are_cut_where_the_voice_changes(diarizer, monkeypatch):
    """The real-speech drop's seed-30 ``answering-01``: two people from different recordings
    answering each other with no pause. The segmentation holds one label over 24-33 s, a turn
    of one person then 3.4 s of the other; within turns, the stretches that sound like the
    other speaker go to them (``Diarizer._resegment``): DER 0.143 -> 0.044."""
    audio, truth = _drop_file(30, "answering-01")
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 2, d.turns
    assert der(d.turns, truth) <= 0.06
    assert all(a.end_s <= b.start_s for a, b in zip(d.exclusive_turns, d.exclusive_turns[1:]))
    assert {v.speaker for v in d.voices} == set(d.speakers)
    monkeypatch.setattr(diarizer.pipeline, "resegment", None)  # the step off: the turn stays whole
    assert der(diarizer.diarize(audio).turns, truth) > 0.1


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_two_people_the_clustering_kept_as_one_for_a_whole_file_are_two(diarizer, monkeypatch):
    """The real-speech drop's seed-34 ``answering-01``: two people answering each other with no
    pause, one speaker for the whole 40 s after clustering (nothing for the reassignment or the
    resegmentation to move to). Their bins fall in two voices at a cosine of about 0.3; one
    side becomes a speaker of its own (``Diarizer._split``): DER 0.259 -> 0.015. A speaker
    count the caller gives stands."""
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    audio, truth = _drop_file(34, "answering-01")
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 2, d.turns
    assert der(d.turns, truth) <= 0.05
    assert {v.speaker for v in d.voices} == set(d.speakers)
    for options in (DiarizationOptions(num_speakers=1), DiarizationOptions(max_speakers=1)):
        forced = Diarizer(options)
        forced.pipeline, forced.encoder = diarizer.pipeline, diarizer.encoder
        assert forced.diarize(audio).speakers == ["SPEAKER_00"], options
    monkeypatch.setattr(diarizer.pipeline, "split", None)  # the step off: one speaker
    assert diarizer.diarize(audio).speakers == ["SPEAKER_00"]


@pytest.mark.parametrize("diarizer", ["3.0"], indirect=True)
def test_a_meeting_of_two_stays_two_speakers_when_the_split_looks_at_them(diarizer):
    """AMI ``dev00`` as recorded (two people in one room): after the reassignment each speaker's
    two best sides are too small or too alike to be two people, so the split leaves it at two
    speakers and DER 0.102. Before the reassignment (where the step was first placed) its first
    speaker still held 6.5 s of the other person's speech at 0.16 to its own, and split: 3
    speakers, DER 0.285."""
    audio, truth = _ami_file("ami-debug-dev00")
    d = diarizer.diarize(audio)
    assert len(d.speakers) == 2, d.turns
    assert der(d.turns, truth) <= 0.11

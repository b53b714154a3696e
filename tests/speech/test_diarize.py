"""The packaged speaker embedding (resemblyzer's GE2E behind pyannote's interface): batching
and piecing bound its memory on long input without changing what it computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.encoders.ge2e import ResemblyzerEmbedding

SAMPLE = Path(__file__).parents[1] / "data" / "sample_archive" / "drop-2026-11-24"


@pytest.fixture(scope="module")
def encoder():
    return ResemblyzerEmbedding("cpu")


@pytest.fixture(scope="module")
def speech():
    return [decode(str(SAMPLE / name)).samples for name in ("interview 01.wav", "meeting-02.flac", "call-07.flac")]


def one_pass(encoder: ResemblyzerEmbedding, wav: np.ndarray) -> np.ndarray:
    """resemblyzer's own way: every partial of the waveform in one forward pass, averaged."""
    import torch

    with torch.inference_mode():
        partial = encoder.encoder(torch.from_numpy(encoder._partials(wav))).numpy()
    v = partial.mean(axis=0)
    return v / np.linalg.norm(v)


def test_batched_forward_passes_give_the_one_pass_embeddings(encoder, speech, monkeypatch):
    expected = np.stack([one_pass(encoder, w) for w in speech])
    # 7 partials a pass: batches cut through waveforms and span two of them
    monkeypatch.setattr(encoder, "max_partials", 7)
    got = encoder.embed_many([*speech, np.zeros(100, np.float32)])
    np.testing.assert_allclose(got[:3], expected, atol=1e-5)
    assert np.isnan(got[3]).all()  # too short: NaN, as pyannote's embeddings do
    assert np.allclose(np.linalg.norm(got[:3], axis=1), 1.0, atol=1e-5)


def test_long_waveforms_are_embedded_in_pieces_close_to_one_pass(encoder, speech, monkeypatch):
    """A speaker with more speech than ``piece_s`` is cut into pieces (bounded mel and
    partials); the voice it gives is the one-pass voice up to the partials lost at the cuts."""
    long = np.concatenate(speech)  # about a minute
    expected = one_pass(encoder, long)
    monkeypatch.setattr(encoder, "piece_s", 15.0)
    seen = []
    original = encoder._partials
    monkeypatch.setattr(encoder, "_partials", lambda wav, rate: seen.append(len(wav)) or original(wav, rate))
    got = encoder.embed_many([long])[0]
    assert len(seen) >= 4 and max(seen) <= 15 * 16_000
    assert float(got @ expected) > 0.995


def test_clustering_on_a_thinned_set_of_embeddings_finds_the_same_two_real_people(monkeypatch):
    """Long files train the clustering on at most ``MAX_CLUSTERING_EMBEDDINGS`` embeddings
    (their pairwise distances were 3.6 GB on a 2-hour file). Thinned to half on pyannote's real
    two-person sample (39 with segmentation-3.0 at a window every 1.5 s, about 90 with the 2021
    checkpoint), the diarization still finds both people, with a DER close to that of the whole
    set."""
    import pyannote.audio.pipelines.clustering as pc
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from opentranscribe_pipeline.speech import packaged
    from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer

    from ..data import real_speech

    sample = real_speech.pyannote_sample()
    ref = Annotation()
    for t in sample.turns:
        ref[Segment(t.start_s, t.end_s)] = t.speaker
    sizes = []
    real_linkage = pc.linkage

    def linkage(x, *args, **kwargs):
        sizes.append(len(x))
        return real_linkage(x, *args, **kwargs)

    monkeypatch.setattr(pc, "linkage", linkage)
    results = {}
    with Diarizer(DiarizationOptions()) as diarizer:
        for cap in (packaged.MAX_CLUSTERING_EMBEDDINGS, None):
            cap = cap or sizes[0] // 2  # half of what the whole set trained on
            monkeypatch.setattr(packaged, "MAX_CLUSTERING_EMBEDDINGS", cap)
            d = diarizer.diarize(sample.samples)
            hyp = Annotation()
            for t in d.turns:
                hyp[Segment(t.start_s, t.end_s)] = t.speaker
            results[cap] = (len(d.speakers), DiarizationErrorRate(collar=0.25)(ref, hyp))
    whole, thinned = sizes
    assert whole > 30 and thinned == whole // 2, sizes
    (n_whole, der_whole), (n_thin, der_thin) = results.values()
    assert n_whole == n_thin == 2, results
    assert der_thin < 0.05 and der_thin <= der_whole + 0.02, results


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, np.float64)
    return v / np.linalg.norm(v)


def test_speakers_with_one_voice_join_and_different_voices_stay_apart():
    """``join_speakers`` (issue 30): a person split over two speakers by the clustering joins
    again where their whole voices are at least the threshold alike; two people (cosine under
    it), a speaker with under ``min_speech_s`` and a count at ``min_count`` stay as they are."""
    from opentranscribe_pipeline.speech.diarize import join_speakers

    a1, a2, b = _unit(1, 0.6, 0), _unit(1, 0.9, 0.2), _unit(0, 0.3, 1)  # a1·a2 ≈ 0.97, a·b < 0.3
    speech = np.array([5.0, 3.0, 6.0])
    assert join_speakers(np.stack([a1, b, a2]), speech, 0.55, 1.0) == [0, 1, 0]
    assert join_speakers(np.stack([a1, b, a2]), speech, 0.99, 1.0) == [0, 1, 2]  # not that alike
    assert join_speakers(np.stack([a1, b, a2]), np.array([5.0, 6.0, 0.5]), 0.55, 1.0) == [0, 1, 2]  # too short
    assert join_speakers(np.stack([a1, b, a2]), speech, 0.55, 1.0, min_count=3) == [0, 1, 2]  # min_speakers
    assert join_speakers(np.stack([a1, b, a2, b]), np.array([5.0, 6.0, 3.0, 2.0]), 0.55, 1.0) == [0, 1, 0, 1]
    no_voice = np.stack([a1, np.full(3, np.nan), a2])  # a speaker without a voice keeps their own group
    assert join_speakers(no_voice, speech, 0.55, 1.0) == [0, 1, 0]


def test_joined_speakers_turns_are_relabelled_and_fused():
    from opentranscribe_pipeline.speech.diarize import Turn, _joined

    turns = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(1.5, 3.0, "SPEAKER_02"), Turn(3.0, 4.0, "SPEAKER_01")]
    joined = {"SPEAKER_00": "SPEAKER_00", "SPEAKER_01": "SPEAKER_01", "SPEAKER_02": "SPEAKER_00"}
    assert _joined(turns, joined) == [Turn(0.0, 3.0, "SPEAKER_00"), Turn(3.0, 4.0, "SPEAKER_01")]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 50), st.integers(0, 3)), max_size=12),
    st.lists(st.integers(0, 3), min_size=4, max_size=4),
)
def test_joined_turns_cover_what_the_joined_speakers_covered(spans, target):
    """Whatever speakers join, each new speaker's turns are disjoint, sorted, and cover the
    union of the turns of the speakers joined into them."""
    from opentranscribe_pipeline.speech.diarize import Turn, _joined

    turns = [Turn(a / 10, (a + n) / 10, f"SPEAKER_{s:02d}") for a, n, s in spans]
    joined = {f"SPEAKER_{s:02d}": f"SPEAKER_{target[s]:02d}" for s in range(4)}
    out = _joined(turns, joined)
    assert out == sorted(out, key=lambda t: (t.start_s, t.end_s, t.speaker))

    def covered(ts, speaker):
        return {
            round(x / 10, 1)
            for t in ts
            if t.speaker == speaker
            for x in range(round(t.start_s * 10), round(t.end_s * 10))
        }

    for new in set(joined.values()):
        mine = [t for t in out if t.speaker == new]
        assert all(a.end_s < b.start_s for a, b in zip(mine, mine[1:]))  # disjoint, not touching
        assert covered(mine, new) == covered([Turn(t.start_s, t.end_s, joined[t.speaker]) for t in turns], new)


def test_a_turn_moves_to_the_speaker_whose_voice_is_nearest_by_more_than_the_margin():
    """``reassign_turns`` (issue 30): a turn whose own embedding is nearer another speaker's
    voice by more than the margin moves there; within the margin, too short to judge (NaN) or
    of a speaker without a voice, it stays; a speaker never loses every turn."""
    from opentranscribe_pipeline.speech.diarize import reassign_turns

    a, b = _unit(1, 0.1, 0), _unit(0, 0.1, 1)
    voices = {"SPEAKER_00": a, "SPEAKER_01": b}
    like_b, between, nan = _unit(0.1, 0, 1), _unit(1, 0, 0.9), np.full(3, np.nan)
    speakers = ["SPEAKER_00", "SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    got = reassign_turns(np.stack([a, like_b, between, nan, like_b]), speakers, voices, 0.1)
    assert got == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    # all of SPEAKER_00's turns are SPEAKER_01's voice: the one that gains least stays
    got = reassign_turns(np.stack([like_b, b, b]), ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"], voices, 0.1)
    assert got == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    assert reassign_turns(np.stack([like_b]), ["SPEAKER_00"], {"SPEAKER_00": a}, 0.1) == ["SPEAKER_00"]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.lists(st.floats(-1, 1), min_size=3, max_size=3)), min_size=1, max_size=10),
    st.lists(st.lists(st.floats(-1, 1), min_size=3, max_size=3), min_size=3, max_size=3),
    st.floats(0.0, 0.5),
)
def test_reassignment_only_moves_turns_that_gain_and_keeps_every_speaker(turns, voice_rows, margin):
    from opentranscribe_pipeline.speech.diarize import reassign_turns

    speakers = [f"SPEAKER_{s:02d}" for s, _ in turns]  # SPEAKER_03 has no voice
    vectors = np.array([v for _, v in turns], np.float64)
    voices = {f"SPEAKER_{i:02d}": np.array(v) for i, v in enumerate(voice_rows) if np.linalg.norm(v) > 1e-3}
    got = reassign_turns(vectors, speakers, voices, margin)
    assert len(got) == len(speakers) and set(speakers) <= set(got) <= set(speakers) | set(voices)  # all keep a turn

    def cos(v, s):
        w = voices[s]
        return float(v @ w / np.linalg.norm(v) / np.linalg.norm(w))

    for v, old, new in zip(vectors, speakers, got):
        if new != old:
            assert old in voices and new in voices and cos(v, new) - cos(v, old) > margin
            assert cos(v, new) >= max(cos(v, s) for s in voices if s != old) - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(0, 2)), min_size=1, max_size=10),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2)), max_size=4),
)
def test_moved_turns_keep_what_was_covered_and_give_the_moved_stretches_away(layout, moves):
    """``_moved``: exclusive turns end to end, some moved: the result is one speaker at a
    time, covers what the turns covered, and each moved stretch is its new speaker's."""
    from opentranscribe_pipeline.speech.diarize import Turn, _moved

    turns, t = [], 0
    for n, s in layout:
        turns.append(Turn(t / 10, (t + n) / 10, f"SPEAKER_{s:02d}"))
        t += n + 3  # a pause between turns
    chosen = {i: s for i, s in moves if i < len(turns)}
    moved = [(turns[i].start_s, turns[i].end_s, turns[i].speaker, f"SPEAKER_{s:02d}") for i, s in chosen.items()]
    moved = [m for m in moved if m[2] != m[3]]
    out = _moved(turns, moved)
    assert all(a.end_s <= b.start_s for a, b in zip(out, out[1:]))  # one speaker at a time
    assert sum(x.end_s - x.start_s for x in out) == pytest.approx(sum(x.end_s - x.start_s for x in turns))
    for a, b, _, target in moved:
        assert any(x.speaker == target and x.start_s <= a and b <= x.end_s for x in out)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=300),
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), max_size=6),
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 20)), max_size=3),
    st.integers(1, 20),
)
def test_unclaimed_speech_is_the_vad_speech_no_turn_and_no_silence_holds(speech, spans, gaps, min_frames):
    """``unclaimed_speech``: on a 10 ms grid, exactly the runs of ``min_s`` or more of frames the
    VAD scores as speech that no turn and no stretch of digital silence covers."""
    from opentranscribe_pipeline.speech.activity import SpeechActivity
    from opentranscribe_pipeline.speech.diarize import Turn, unclaimed_speech

    n = len(speech)
    scores = np.where(np.array(speech), 0.9, 0.1).astype(np.float32)[:, None]
    activity = SpeechActivity(scores, 0.0, 0.01, 0.01, n * 160, "test")  # frame i centred on (i + 0.5) / 100
    turns = [Turn(a / 100, (a + k) / 100, "SPEAKER_00") for a, k in spans]
    silence = [(a / 100, (a + k) / 100) for a, k in gaps]
    got = unclaimed_speech(activity, n * 160, turns, silence, 0.5, min_frames / 100)
    free = np.array(speech)
    for a, k in [*spans, *gaps]:
        free[a : a + k] = False
    expected, i = [], 0
    while i < n:
        if free[i]:
            j = i
            while j < n and free[j]:
                j += 1
            if j - i >= min_frames:
                expected.append((i / 100, j / 100))
            i = j
        else:
            i += 1
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 30), st.integers(0, 2)), min_size=1, max_size=8),
    st.lists(st.integers(0, 7), max_size=4),
)
def test_unclaimed_stretches_go_to_the_nearest_speaker_and_turns_stay_exclusive(layout, holes):
    """``_filled``: exclusive turns with pauses between them, some pauses given over: the turns
    stay one speaker at a time, cover the turns and the stretches, and each stretch is the
    speaker's whose turn is nearest."""
    from opentranscribe_pipeline.speech.diarize import Turn, _filled

    turns, t = [], 0
    for n, s in layout:
        turns.append(Turn(t / 10, (t + n) / 10, f"SPEAKER_{s:02d}"))
        t += n + 5
    stretches = sorted(
        {(round(turns[i].end_s + 0.1, 3), round(turns[i].end_s + 0.3, 3)) for i in holes if i < len(turns)}
    )
    out = _filled(turns, stretches)
    assert all(a.end_s <= b.start_s for a, b in zip(out, out[1:]))
    total = sum(x.end_s - x.start_s for x in turns) + sum(b - a for a, b in stretches)
    assert sum(x.end_s - x.start_s for x in out) == pytest.approx(total)
    for a, b in stretches:  # 0.1 s after the end of a turn, 0.2 s or more before the next one
        before = max((x for x in turns if x.end_s <= a), key=lambda x: x.end_s)
        assert any(x.speaker == before.speaker and x.start_s <= a and b <= x.end_s for x in out)
    assert _filled(turns, []) == turns and _filled([], stretches) == []

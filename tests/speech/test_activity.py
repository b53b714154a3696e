"""The speech activity diarization hands to transcription is the VAD WhisperX would run (its
checkpoint, its windows, its aggregation; SincNet's first layer once per stretch of audio,
``speech/sliding.py``, so the scores are WhisperX's up to float rounding), and transcribing with
it gives the same transcript."""

from __future__ import annotations

import numpy as np
import pytest

from opentranscribe_pipeline.speech.activity import SpeechActivity, activity_path, speech_islands
from opentranscribe_pipeline.speech.asr import VAD_OWN, VAD_SHARED, AsrOptions, Transcriber
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.diarize import DiarizationOptions, Diarizer
from opentranscribe_pipeline.speech.models import resolve_asr_model

from ..conftest import SAMPLE_DROP


@pytest.fixture(scope="module")
def speech():
    # a length that leaves a last, padded window (the crop pyannote applies to it)
    samples = decode(str(SAMPLE_DROP / "interview 01.wav")).samples
    return np.concatenate([samples, samples[:12_345]])


@pytest.fixture(scope="module")
def diarized(speech):
    with Diarizer(DiarizationOptions()) as d:
        yield d.diarize(speech)


@pytest.fixture(scope="module")
def tiny():
    with Transcriber(resolve_asr_model("packaged:tiny.en"), AsrOptions()) as t:
        yield t


def test_the_activity_is_whisperx_vad_output(diarized, speech, tiny):
    assert_whisperx_vad_output(diarized, speech, tiny)


def test_with_the_2021_checkpoint_the_activity_is_still_whisperx_vad_output(speech, tiny, monkeypatch):
    # OPENTRANSCRIBE_DIARIZATION_SEGMENTATION=whisperx: WhisperX's own checkpoint segments too,
    # and one pass gives both
    monkeypatch.setenv("OPENTRANSCRIBE_DIARIZATION_SEGMENTATION", "whisperx")
    with Diarizer(DiarizationOptions()) as d:
        assert d.pipeline.segmentation_model.endswith("whisperx/assets/pytorch_model.bin")
        assert d.pipeline._segmentation.duration == 5.0 and d.pipeline._vad is d.pipeline._segmentation
        diarized = d.diarize(speech)
    assert_whisperx_vad_output(diarized, speech, tiny)
    assert diarized.speakers == ["SPEAKER_00", "SPEAKER_01"]  # interview 01.wav: two voices


def assert_whisperx_vad_output(diarized, speech, tiny):
    from whisperx.vads import Pyannote

    vad = tiny._pipeline.vad_model
    own = vad({"waveform": Pyannote.preprocess_audio(speech), "sample_rate": 16_000})
    shared = diarized.activity.sliding_window_feature()
    assert own.data.shape == shared.data.shape
    # float rounding (the first layer computed once per stretch), and the same speech regions
    assert np.abs(own.data - shared.data).max() < 1e-3
    assert (own.sliding_window.start, own.sliding_window.step, own.sliding_window.duration) == (
        shared.sliding_window.start,
        shared.sliding_window.step,
        shared.sliding_window.duration,
    )
    frames = own.sliding_window
    theirs = speech_islands(own.data[:, 0], frames.start, frames.step, frames.duration, total_s=speech.size / 16_000)
    assert theirs == diarized.activity.islands() and len(theirs) > 3
    assert diarized.activity.fingerprint == tiny.vad_fingerprint
    assert diarized.activity.num_samples == speech.size


def test_transcribing_with_it_gives_the_same_transcript(diarized, speech, tiny):
    vad = tiny._pipeline.vad_model
    own = tiny.transcribe(speech)
    shared = tiny.transcribe(speech, activity=diarized.activity)
    assert (own.vad, shared.vad) == (VAD_OWN, VAD_SHARED)
    assert own.segments == shared.segments and len(own.segments) > 3
    # and WhisperX's own VAD is used after it: the pipeline's VAD is never swapped out
    assert tiny.transcribe(speech).vad == VAD_OWN
    assert tiny._pipeline.vad_model is vad


def test_an_activity_of_other_audio_or_another_model_is_not_used(diarized, speech, tiny):
    shorter = speech[:-16_000]
    assert not tiny.usable_activity(diarized.activity, shorter.size)
    assert tiny.transcribe(shorter, activity=diarized.activity).vad == VAD_OWN
    other = SpeechActivity(**{**diarized.activity.__dict__, "fingerprint": "0" * 16})
    assert not tiny.usable_activity(other, speech.size)


def test_it_round_trips_through_bytes_and_is_keyed_by_the_audio(diarized):
    back = SpeechActivity.from_bytes(diarized.activity.to_bytes())
    assert np.array_equal(back.scores, diarized.activity.scores) and back == SpeechActivity(
        back.scores,
        *[getattr(diarized.activity, f) for f in ("start", "duration", "step", "num_samples", "fingerprint")],
    )
    fp = diarized.activity.fingerprint
    a = activity_path("s3://b/w/audio_16k/ab/abc.flac", fp, b"one")
    assert a.startswith("s3://b/w/audio_16k/ab/abc.speech-") and a != activity_path(
        "s3://b/w/audio_16k/ab/abc.flac", fp, b"two"
    )


def test_silence_diarized_still_hands_over_an_activity(tiny):
    silence = np.zeros(16_000 * 6, np.float32)
    with Diarizer(DiarizationOptions()) as d:
        result = d.diarize(silence)
    assert result.note == "no speech found" and result.activity is not None
    assert tiny.transcribe(silence, activity=result.activity).segments == ()


def test_word_timings_reuse_the_asr_pass_encoder_output(speech, tiny, monkeypatch):
    """One encoder pass per batch of VAD chunks: decoding and the cross-attention word
    alignment share it (no second encoding of every chunk for the word times)."""
    wm = tiny._pipeline.model
    calls = []
    own = type(wm).encode
    monkeypatch.setattr(type(wm), "encode", lambda self, features: calls.append(len(features)) or own(self, features))
    tx = tiny.transcribe(speech)
    words = [w for s in tx.segments for w in s.words]
    assert words and all(w.timing_source == "cross_attention" and w.end_s >= w.start_s for w in words)
    chunks = sum(calls)  # every VAD chunk encoded once, in batches of at most batch_size
    assert len(calls) == -(-chunks // tiny.options.batch_size)
    # the same words as the two-pass alignment, at nearly the same times
    monkeypatch.setattr(tiny, "words_in_asr_pass", False)
    calls.clear()
    again = [w for s in tiny.transcribe(speech).segments for w in s.words]
    assert chunks < sum(calls) <= 2 * chunks  # the fallback encodes the chunks with text again
    assert [w.word for w in again] == [w.word for w in words]
    gaps = np.array([abs(a.start_s - b.start_s) + abs(a.end_s - b.end_s) for a, b in zip(words, again)])
    assert np.median(gaps) < 0.05


def test_its_islands_are_the_regions_whisperx_vad_cuts(diarized, speech, tiny):
    """speech_islands() binarizes the scores exactly as WhisperX's VAD does (pyannote's
    Binarize with WhisperX's onset and offset), on the shared activity and on a noisy copy."""
    from whisperx.vads import Pyannote
    from whisperx.vads.pyannote import Binarize

    from opentranscribe_pipeline.speech.activity import VAD_OFFSET, VAD_ONSET

    params = tiny._pipeline._vad_params
    assert (params["vad_onset"], params["vad_offset"]) == (VAD_ONSET, VAD_OFFSET)
    noisy = speech + np.random.default_rng(0).normal(0, 0.02, speech.shape).astype(np.float32)
    for scores in (
        diarized.activity.sliding_window_feature(),
        tiny._pipeline.vad_model({"waveform": Pyannote.preprocess_audio(noisy), "sample_rate": 16_000}),
    ):
        theirs = [(s.start, s.end) for s in Binarize(onset=VAD_ONSET, offset=VAD_OFFSET)(scores).get_timeline()]
        frames = scores.sliding_window
        ours = speech_islands(scores.data[:, 0], frames.start, frames.step, frames.duration)
        assert len(ours) == len(theirs) > 3
        assert np.allclose(ours, theirs, atol=1e-9, rtol=0)
    assert diarized.activity.islands() == speech_islands(
        diarized.activity.scores,
        diarized.activity.start,
        diarized.activity.step,
        diarized.activity.duration,
        total_s=speech.size / 16_000,
    )

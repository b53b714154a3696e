"""SincNet's first layer once per batch's stretch of audio (``speech/sliding.py``): the same
windows and, up to float rounding, the same scores as pyannote's ``Inference``, on real speech
with a zero-padded last window, for both packaged segmentation checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opentranscribe_pipeline.speech.activity import VAD_OFFSET, VAD_ONSET, bundled_checkpoint, speech_islands
from opentranscribe_pipeline.speech.packaged import segmentation_checkpoint
from opentranscribe_pipeline.speech.sliding import SharedFirstLayerInference, shares_first_layer

from ..data.real_speech import pyannote_sample


@pytest.fixture(scope="module")
def speech() -> dict:
    samples = pyannote_sample().samples
    # a length that leaves a last, zero-padded window, and a quiet stretch the filters see too
    quiet = np.random.default_rng(0).normal(0, 10 ** (-70 / 20), 3 * 16_000).astype(np.float32)
    samples = np.concatenate([samples, quiet, samples[:40_007]])
    return {"waveform": torch.from_numpy(samples)[None], "sample_rate": 16_000}


_models: dict = {}


def _both(checkpoint: str, speech: dict, batch_size: int = 32, step: float | None = None):
    from pyannote.audio import Inference, Model

    model = _models.get(checkpoint) or _models.setdefault(checkpoint, Model.from_pretrained(checkpoint))
    assert shares_first_layer(model)
    duration = model.specifications.duration
    kw = dict(duration=duration, step=step or 0.1 * duration, skip_aggregation=True, batch_size=batch_size)
    theirs = Inference(model, **kw)(speech)
    ours = SharedFirstLayerInference(model, **kw)(speech)
    return theirs, ours


def _same_windows(theirs, ours):
    assert ours.data.shape == theirs.data.shape
    a, b = theirs.sliding_window, ours.sliding_window
    assert (a.start, a.step, a.duration) == (b.start, b.step, b.duration)


def test_whisperx_vad_checkpoint_same_windows_same_speech(speech):
    theirs, ours = _both(bundled_checkpoint(), speech, batch_size=7)  # batches that end mid-file
    _same_windows(theirs, ours)
    diff = np.abs(ours.data - theirs.data)
    # float rounding, amplified by the instance norms on near-constant filter channels
    assert np.median(diff) < 1e-4 and diff.max() < 1e-2
    assert ours.data.max() > 0.3 and ours.data.min() < 0.1  # scores, not zeros

    def islands(scores):  # each window's speech, as WhisperX's VAD thresholds it
        frames = 1.0 / scores.data.shape[1]
        return [
            speech_islands(w.max(axis=1), 0.0, frames, frames, onset=VAD_ONSET, offset=VAD_OFFSET) for w in scores.data
        ]

    assert islands(ours) == islands(theirs)


def test_segmentation_3_same_local_speakers(speech):
    theirs, ours = _both(segmentation_checkpoint(), speech)
    _same_windows(theirs, ours)
    # powerset: each frame's most likely set of speakers, as 0/1 per local speaker
    assert set(np.unique(theirs.data)) == {0.0, 1.0}
    assert (ours.data != theirs.data).mean() < 1e-4


def test_a_step_off_the_filters_stride_runs_as_pyannote(speech):
    # 0.5003 s (8,005 samples) is not a whole number of 10-sample strides: pyannote's own path, bit for bit
    part = {"waveform": speech["waveform"][:, : 12 * 16_000], "sample_rate": 16_000}
    theirs, ours = _both(bundled_checkpoint(), part, step=0.5003)
    assert np.array_equal(ours.data, theirs.data)


def test_audio_shorter_than_a_window(speech):
    short = {"waveform": speech["waveform"][:, :30_000], "sample_rate": 16_000}
    theirs, ours = _both(segmentation_checkpoint(), short)
    _same_windows(theirs, ours)
    assert ours.data.shape[0] == 1 and np.array_equal(ours.data, theirs.data)

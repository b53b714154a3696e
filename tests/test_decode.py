"""Decoding with PyAV: every container of the sample archive, and each kind of bad input."""

import io

import numpy as np
import pytest

from opentranscribe_pipeline.speech.decode import SAMPLE_RATE, MediaError, decode, encode_flac, load_flac

from .conftest import SAMPLE_DROP, TRUTH, build_bad_drop


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_DROP.iterdir()))
def test_every_sample_container_decodes_to_its_true_duration(name):
    decoded = decode(str(SAMPLE_DROP / name))
    truth = TRUTH[f"{SAMPLE_DROP.name}/{name}"]
    assert decoded.samples.dtype == np.float32
    # lossy codecs pad a frame or two; never more than 0.1 s
    assert abs(decoded.duration_s - truth["duration_s"]) < 0.1
    assert 0.1 < float(np.abs(decoded.samples).max()) <= 1.0


def test_video_probe_reports_size_and_fps():
    info = decode(str(SAMPLE_DROP / "town hall 06.mp4")).info
    assert (info.video_codec, info.width, info.height, info.fps) == ("mpeg4", 160, 120, 10.0)
    assert info.audio_codec == "aac" and info.channels == 1


@pytest.mark.parametrize(
    "name,reason,skip",
    [
        ("notes.wav", "not_media", False),
        ("truncated.mp3", "truncated", False),
        ("video only.mp4", "no_audio", True),
        ("empty.wav", "not_media", False),
    ],
)
def test_bad_inputs_raise_media_error_with_reason(tmp_path, name, reason, skip):
    drop = build_bad_drop(tmp_path / "drop")
    with pytest.raises(MediaError) as err:
        decode(str(drop / name))
    assert err.value.reason == reason
    assert err.value.skip is skip
    assert str(err.value)  # a human-readable detail, not an FFmpeg errno


def test_silence_decodes_fine(tmp_path):
    drop = build_bad_drop(tmp_path / "drop")
    decoded = decode(str(drop / "silence.flac"))
    assert decoded.duration_s == pytest.approx(3.0, abs=0.01)
    assert float(np.abs(decoded.samples).max()) == 0.0


def test_flac_roundtrip_is_16bit_exact():
    samples = np.sin(np.linspace(0, 400, SAMPLE_RATE * 2)).astype(np.float32) * 0.5
    back = load_flac(encode_flac(samples))
    assert back.shape == samples.shape
    assert float(np.abs(back - samples).max()) < 2 / 32768


def test_decode_from_a_file_object():
    data = (SAMPLE_DROP / "meeting-02.flac").read_bytes()
    assert decode(io.BytesIO(data)).duration_s == pytest.approx(16.73, abs=0.05)

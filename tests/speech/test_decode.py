"""Decoding with PyAV: every container of the sample archive, and each kind of bad input."""

import io
import re
import wave

import numpy as np
import pytest

from opentranscribe_pipeline.speech.decode import (
    SAMPLE_RATE,
    MediaError,
    MediaProblem,
    decode,
    encode_flac,
    load_flac,
)

from ..conftest import SAMPLE_DROP, TRUTH, build_bad_drop


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
    "name,reason,skip,detail",
    [
        ("notes.wav", "not_media", False, r"^not a readable media file \(Invalid data found when processing input\)$"),
        ("truncated.mp3", "truncated", False, r"^truncated: decoded \d+\.\d s of the 17\.6 s the container declares$"),
        ("video only.mp4", "no_audio", True, r"^no audio stream \(video only: mpeg4 64x48\)$"),
        ("empty.wav", "not_media", False, r"^not a readable media file \(.+\)$"),
    ],
)
def test_bad_inputs_raise_media_error_with_reason(tmp_path, name, reason, skip, detail):
    drop = build_bad_drop(tmp_path / "drop")
    with pytest.raises(MediaError) as err:
        decode(str(drop / name))
    assert err.value.reason == reason
    assert err.value.reason is MediaProblem(reason)  # one of the documented codes
    assert err.value.skip is skip
    assert str(err.value)  # a human-readable detail, not an FFmpeg errno
    assert re.match(detail, str(err.value)), str(err.value)


def test_a_truncated_upload_says_how_much_decoded(tmp_path):
    drop = build_bad_drop(tmp_path / "drop")
    with pytest.raises(MediaError) as err:
        decode(str(drop / "truncated.mp3"))
    decoded, declared = map(float, re.findall(r"(\d+\.\d) s", str(err.value)))
    # half the bytes: about half the audio, of the full file's duration
    assert declared == pytest.approx(TRUTH[f"{SAMPLE_DROP.name}/radio_show_03.mp3"]["duration_s"], abs=0.1)
    assert 0.3 * declared < decoded < 0.7 * declared


def test_damaged_audio_data_decodes_with_warnings_and_keeps_its_timing():
    """4 KB of random bytes inside the AAC data: ffmpeg decodes on with warnings, and so do
    we; the damaged packets become silence, so the duration (and every later timestamp) stays."""
    data = bytearray((SAMPLE_DROP / "podcast 04.m4a").read_bytes())
    at = int(len(data) * 0.6)  # inside the audio data; the index at the end stays intact
    data[at : at + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    decoded = decode(io.BytesIO(bytes(data)))
    assert decoded.decode_warnings >= 1
    truth = TRUTH[f"{SAMPLE_DROP.name}/podcast 04.m4a"]["duration_s"]
    assert abs(decoded.duration_s - truth) < 0.1


def test_audio_data_damaged_throughout_is_a_decode_error():
    data = bytearray((SAMPLE_DROP / "podcast 04.m4a").read_bytes())
    rng = np.random.default_rng(2)
    start = len(data) // 10  # past the header; mp4 keeps its index at the end (moov)
    for at in range(start, len(data) - 4000, 1500):  # every AAC packet hit
        data[at : at + 600] = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    with pytest.raises(MediaError) as err:
        decode(io.BytesIO(bytes(data)))
    assert err.value.reason in (MediaProblem.DECODE_ERROR, MediaProblem.NOT_MEDIA), str(err.value)
    assert err.value.skip is False


def test_an_audio_stream_without_samples_is_no_audio_data():
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:  # a valid WAV header and nothing after it
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(b"")
    with pytest.raises(MediaError) as err:
        decode(io.BytesIO(buf.getvalue()))
    assert err.value.reason == MediaProblem.NO_AUDIO_DATA and err.value.skip is False
    assert str(err.value) == "the audio stream decoded to no samples"


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


class _SeekFails(io.BytesIO):
    """A stream that says it seeks and raises when asked to (a network body, a pipe)."""

    def seek(self, offset, whence=0):
        if (offset, whence) not in ((0, 0), (0, 1)):
            raise io.UnsupportedOperation("seek")
        return super().seek(offset, whence)


def test_a_truncated_mp3_decodes_without_a_word_on_the_console(tmp_path, capfd, caplog):
    """Truncated MP3s with PyAV's logging on (torchvision turns it on when it is imported, as
    in the pipeline's step processes): no traceback, no "PyAV library exception being
    dropped", no FFmpeg line on stderr; one INFO line per failing file, naming it (shown
    with -v only)."""
    import logging

    import av.logging

    mp3 = (SAMPLE_DROP / "radio_show_03.mp3").read_bytes()
    (tmp_path / "half.mp3").write_bytes(mp3[: len(mp3) // 2])
    (tmp_path / "header.mp3").write_bytes(mp3[:2000])  # FFmpeg: "invalid new backstep -1"
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    caplog.set_level(logging.INFO, logger="opentranscribe_pipeline.speech.decode")
    try:
        for name in ("half.mp3", "header.mp3"):
            with pytest.raises(MediaError) as err:
                decode(str(tmp_path / name), name=name)
            assert err.value.reason == MediaProblem.TRUNCATED
            with open(tmp_path / name, "rb") as f, pytest.raises(MediaError):
                decode(f, name=name)
        # a stream whose seek raises: PyAV printed a traceback per failed seek, then raised
        decoded = decode(_SeekFails(mp3[: len(mp3) // 2]), name="stream.mp3")
        assert 8.0 < decoded.duration_s < 9.5  # no seek, no size: the truncation cannot show
    finally:
        av.logging.set_level(level)
    out, err_text = capfd.readouterr()
    assert err_text == "" and out == ""
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 4 and all(line.startswith(("half.mp3: truncated", "header.mp3: truncated")) for line in lines)
    assert any("FFmpeg: invalid new backstep" in line for line in lines)


def test_a_read_error_of_the_storage_is_raised_as_it_was():
    class Fails(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 20_000:
                raise ConnectionResetError("peer went away")
            return super().read(size)

    with pytest.raises(ConnectionResetError, match="peer went away"):
        decode(Fails((SAMPLE_DROP / "radio_show_03.mp3").read_bytes()), name="stream.mp3")

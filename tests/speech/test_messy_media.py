"""Messy and hostile media at the decoder: trailing junk and tags, silence bombs, two audio
tracks, the energy check. Files are built with PyAV into tmp_path (tests/data/make_messy_media.py)."""

import numpy as np
import pytest

from opentranscribe_pipeline.speech.decode import MediaError, MediaProblem, activity, decode

from ..conftest import SAMPLE_DROP, TRUTH
from ..data.make_messy_media import TAILS, mp3_with_tail, silence_bomb, two_tracks
from ..demux_spy import DemuxSpy

MP3_S = TRUTH[f"{SAMPLE_DROP.name}/radio_show_03.mp3"]["duration_s"]


@pytest.mark.parametrize("label", list(TAILS))
def test_mp3_with_trailing_bytes_or_tags_decodes_to_the_same_audio(tmp_path, label):
    clean = decode(str(SAMPLE_DROP / "radio_show_03.mp3"))
    path = mp3_with_tail(tmp_path / "x.mp3", TAILS[label])
    decoded = decode(str(path), size_bytes=path.stat().st_size)
    assert abs(decoded.duration_s - MP3_S) < 0.1
    assert abs(decoded.duration_s - clean.duration_s) < 0.1
    n = min(len(clean.samples), len(decoded.samples))
    assert np.array_equal(decoded.samples[: n - 4000], clean.samples[: n - 4000])  # the audio itself untouched
    # stray bytes after the last frame are damage (a rejected packet), well-formed tags are not
    if label in ("1 zero byte", "3 zero bytes", "2 KB random junk"):
        assert decoded.decode_warnings > 0
    elif label in ("ID3v1 tag", "APEv2 tag"):
        assert decoded.decode_warnings == 0
    assert clean.decode_warnings == 0


def test_a_clean_file_has_no_warnings_and_one_track():
    decoded = decode(str(SAMPLE_DROP / "town hall 06.mp4"))
    assert (decoded.decode_warnings, decoded.audio_tracks, decoded.audio_track) == (0, 1, 0)


def test_truncation_is_still_caught_with_junk_after_it(tmp_path):
    data = (SAMPLE_DROP / "radio_show_03.mp3").read_bytes()
    (tmp_path / "t.mp3").write_bytes(data[: len(data) // 2] + b"\0\0\0")
    with pytest.raises(MediaError) as err:
        decode(str(tmp_path / "t.mp3"))
    assert err.value.reason == MediaProblem.TRUNCATED


@pytest.mark.parametrize("lie", [False, True], ids=["declares 3 h", "declares nothing"])
def test_silence_bomb_is_refused_without_decoding_it(tmp_path, monkeypatch, lie):
    bomb = silence_bomb(tmp_path / "bomb.flac", lie=lie)
    size = bomb.stat().st_size
    assert size < 300_000
    spy = DemuxSpy().install(monkeypatch)
    with pytest.raises(MediaError) as err:
        decode(str(bomb), size_bytes=size)
    assert err.value.reason == MediaProblem.IMPLAUSIBLE_DURATION and not err.value.skip
    assert str(err.value).startswith("implausible duration: ")
    [opened] = spy.opened
    if lie:  # decoding stopped at the plausible limit (10 min), never 3 h
        assert "decoding stopped at 0.17 h" in str(err.value)
        # the packets read: the 600 s limit plus the few 8 s FLAC blocks frame threads read
        # ahead, not the 3 h (10,800 s) in the file
        assert 600 < opened.seconds < 900, opened
    else:  # refused from the header: not one packet read
        assert "the container declares 3.00 h" in str(err.value)
        assert (opened.packets, opened.seconds) == (0, 0.0)


def test_ceiling_on_decoded_duration(tmp_path):
    path = SAMPLE_DROP / "meeting-02.flac"  # 16.7 s
    with pytest.raises(MediaError) as err:
        decode(str(path), max_duration_s=10.0)
    assert err.value.reason == MediaProblem.TOO_LONG
    assert "over the 0.00277778 h ceiling" in str(err.value) or "ceiling on decoded duration" in str(err.value)
    assert decode(str(path), max_duration_s=20.0).duration_s == pytest.approx(16.73, abs=0.05)
    # a lying header: decoding stops at the ceiling
    bomb = silence_bomb(tmp_path / "bomb.flac", hours=0.5, lie=True)
    with pytest.raises(MediaError) as err:
        decode(str(bomb), max_duration_s=60.0, min_bytes_per_second=0)
    assert err.value.reason == MediaProblem.TOO_LONG and "decoding stopped at 0.02 h" in str(err.value)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "aac"), (".mkv", "flac")])
def test_two_audio_tracks_are_counted_and_one_is_picked(tmp_path, suffix, codec):
    interview = TRUTH[f"{SAMPLE_DROP.name}/interview 01.wav"]["duration_s"]
    meeting = TRUTH[f"{SAMPLE_DROP.name}/meeting-02.flac"]["duration_s"]
    first = two_tracks(tmp_path / f"first{suffix}", default=0, codec=codec)
    second = two_tracks(tmp_path / f"second{suffix}", default=1, codec=codec)
    d = decode(str(first))
    assert (d.audio_tracks, d.audio_track) == (2, 0) and abs(d.duration_s - interview) < 0.1
    d = decode(str(second))  # the track flagged default
    assert (d.audio_tracks, d.audio_track) == (2, 1) and abs(d.duration_s - meeting) < 0.1
    d = decode(str(second), audio_track=0)  # configured
    assert (d.audio_tracks, d.audio_track) == (2, 0) and abs(d.duration_s - interview) < 0.1
    d = decode(str(first), audio_track=7)  # a track the file lacks: the default one
    assert (d.audio_tracks, d.audio_track) == (2, 0)


def test_activity_is_zero_for_silence_and_high_for_speech():
    assert activity(np.zeros(16000 * 60, np.float32)) == 0.0
    assert activity(np.zeros(10, np.float32)) == 0.0
    speech = decode(str(SAMPLE_DROP / "interview 01.wav")).samples
    assert activity(speech) > 0.5
    quiet_noise = np.random.default_rng(0).normal(0, 0.0001, 16000 * 5).astype(np.float32)  # -80 dBFS
    assert activity(quiet_noise) == 0.0
    one_click = np.zeros(16000 * 60, np.float32)
    one_click[1000:1100] = 0.5
    assert 0 < activity(one_click) * 60 < 0.25  # under a quarter second of sound: silent

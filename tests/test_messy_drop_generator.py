"""The seeded messy-drop generator (tests/data/make_messy_drop.py) on its own: reproducible,
varied, every file decodes (with the pipeline's decoder) to the duration its truth states,
turns inside the file, one speaker per channel in the stereo file. Fast: no models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from opentranscribe_pipeline.speech.decode import MediaError, MediaProblem, decode

from .data.make_messy_drop import CONTAINERS, REAL_SOURCE, SYNTH_VOICES, make_drop, missing_tools

SEED = 2811
N_FILES = 12  # 9 speech files: every container once, plus silence, noise and a video-only file
# encoder padding that survives decoding (up to one AAC frame: 1024 samples, 64 ms at 16 kHz)
DURATION_TOLERANCE_S = 0.1


@pytest.fixture(scope="module", autouse=True)
def _tts_available():
    missing = missing_tools()
    if missing:
        message = (
            f"{', '.join(missing)} not on PATH: apt-get install espeak-ng flite (the messy-drop generator needs them)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def drop(tmp_path_factory) -> tuple[Path, dict]:
    target = tmp_path_factory.mktemp("messy") / "drop"
    return target, make_drop(target, SEED, N_FILES)


def _files(truth: dict) -> dict[str, dict]:
    return truth["files"]


def test_same_seed_same_truth_and_bytes(drop, tmp_path):
    target, truth = drop
    again = tmp_path / "again"
    truth2 = make_drop(again, SEED, N_FILES)
    assert truth2 == truth
    assert (again / "truth.json").read_bytes() == (target / "truth.json").read_bytes()
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    different = [n for n in names if (target / n).read_bytes() != (again / n).read_bytes()]
    assert not different, f"not byte-identical for the same seed: {different}"
    assert json.loads((target / "truth.json").read_text()) == truth


def test_different_seeds_different_layouts(drop, tmp_path):
    _, truth = drop
    other = make_drop(tmp_path / "other", SEED + 1, 5)

    def signature(t):
        return sorted(
            repr((f["container"], f["sample_rate"], f["duration_s"], [s["kind"] for s in f["layout"]]))
            for f in _files(t).values()
        )

    assert signature(other) != signature(truth)
    assert sorted(_files(other)) != sorted(_files(truth))
    assert len(_files(other)) == 5


def test_drop_has_every_kind_of_file(drop):
    target, truth = drop
    files = _files(truth)
    assert len(files) == N_FILES and (target / "truth.json").exists()
    assert sorted(p.name for p in target.iterdir() if p.name != "truth.json") == sorted(files)
    speech = [f for f in files.values() if f["expected"] == "ok"]
    assert {f["container"] for f in speech} == set(CONTAINERS)
    assert sorted(f["kind"] for f in files.values() if f["expected"] != "ok") == ["noise", "silence", "video_only"]
    assert [f["expected"] for f in files.values() if f["kind"] == "video_only"] == ["skipped"]
    assert sum(f["kind"] == "stereo" for f in files.values()) == 1
    for f in speech:
        assert 1 <= len(f["speakers"]) <= 6 and f["turns"]
        assert set(f["speakers"]) == {t["speaker"] for t in f["turns"]}
        assert all(s in SYNTH_VOICES or s.startswith(REAL_SOURCE + ":") for s in f["speakers"])
    every_speaker = {s for f in speech for s in f["speakers"]}
    assert any(s.startswith(REAL_SOURCE + ":") for s in every_speaker), "no real voice beside the synthetic ones"
    kinds = {s["kind"] for f in speech for s in f["layout"]}
    assert {"turns", "monologue", "rapid", "overlap", "one_word"} <= kinds, kinds
    texts = [t["text"] for f in speech for t in f["turns"] if t["text"]]
    assert any(t.endswith("?") for t in texts) and any(t in ("Yes.", "Okay.", "No.", "Right.") for t in texts)
    assert {f["sample_rate"] for f in speech} >= {48_000} and len({f["sample_rate"] for f in speech}) >= 3


def test_every_file_decodes_to_its_duration(drop):
    target, truth = drop
    for name, f in _files(truth).items():
        path = target / name
        if f["expected"] == "skipped":
            with pytest.raises(MediaError) as err:
                decode(str(path))
            assert err.value.reason == MediaProblem.NO_AUDIO and err.value.skip
            continue
        got = decode(str(path), size_bytes=path.stat().st_size)
        assert abs(got.duration_s - f["duration_s"]) <= DURATION_TOLERANCE_S, (name, got.duration_s, f["duration_s"])
        assert got.decode_warnings == 0, name
        assert got.info.sample_rate == f["sample_rate"] and got.info.channels == f["channels"], (name, got.info)
        assert (got.info.video_codec is not None) == (f["video_codec"] is not None), name
        if f["kind"] == "silence":
            assert float(np.abs(got.samples).max()) < 1e-3, name


def test_turns_lie_inside_the_file(drop):
    _, truth = drop
    for name, f in _files(truth).items():
        for t in f["turns"]:
            assert 0 <= t["start_s"] < t["end_s"] <= f["duration_s"] + 1e-6, (name, t)
        for s in f["layout"]:
            assert 0 <= s["start_s"] <= s["end_s"] <= f["duration_s"] + 1e-6, (name, s)
        if f["expected"] == "ok":
            assert 0 < f["speech_s"] <= f["duration_s"]


def test_overlaps_and_rapid_turns_are_what_they_say(drop):
    _, truth = drop
    speech = [f for f in _files(truth).values() if f["expected"] == "ok"]
    overlapping = rapid = 0
    for f in speech:
        turns = sorted(f["turns"], key=lambda t: t["start_s"])
        for a, b in zip(turns, turns[1:]):
            if a["section"] == b["section"] == "overlap" and a["speaker"] != b["speaker"] and b["start_s"] < a["end_s"]:
                overlapping += 1
        rapid += sum(t["section"] == "rapid" and t["end_s"] - t["start_s"] <= 2.0 + 1e-3 for t in turns)
    assert overlapping and rapid


def _channels(path: Path) -> np.ndarray:
    """The file's own channels (no downmix), float32 (channels, n)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rs = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=16_000)
        parts = [o.to_ndarray() for frame in c.decode(stream) for o in rs.resample(frame)]
        parts += [o.to_ndarray() for o in rs.resample(None)]
    return np.concatenate(parts, axis=1)


def test_stereo_file_has_one_speaker_per_channel(drop):
    target, truth = drop
    [f] = [f for f in _files(truth).values() if f["kind"] == "stereo"]
    assert f["channels"] == 2 and len(f["speakers"]) == 2
    by_channel: dict[int, set[str]] = {}
    for t in f["turns"]:
        by_channel.setdefault(t["channel"], set()).add(t["speaker"])
    assert sorted(by_channel) == [0, 1] and all(len(v) == 1 for v in by_channel.values())
    assert by_channel[0] != by_channel[1]
    pcm = _channels(target / f["name"])
    assert pcm.shape[0] == 2
    checked = 0
    for t in f["turns"]:
        a, b = int(t["start_s"] * 16_000), int(t["end_s"] * 16_000)
        others = [
            u
            for u in f["turns"]
            if u["channel"] != t["channel"] and u["start_s"] < t["end_s"] and u["end_s"] > t["start_s"]
        ]
        if others:  # both talk at once: each channel still carries its own
            continue
        rms = np.sqrt(np.mean(np.square(pcm[:, a:b], dtype=np.float64), axis=1))
        mine, other = rms[t["channel"]], rms[1 - t["channel"]]
        assert mine > 10 * other, (t, rms)  # at least 20 dB apart
        checked += 1
    assert checked >= 2

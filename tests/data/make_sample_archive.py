"""Synthesize the sample archive: multi-speaker dialogues with known text and turns.

Voices recur across files (flite ``slt``/``rms``/``awb`` and espeak-ng ``en-us+f3``), so the
archive also exercises cross-file speaker identity. Each dialogue is written in a different
container (wav, flac, mp3, m4a, ogg/opus, mp4 video) with PyAV; ``truth.json`` holds the
exact text and speaker turns (seconds from the start of the media).

Needs the Debian packages ``flite`` and ``espeak-ng`` plus the project venv (PyAV, soxr).
Run from the project root::

    .venv/bin/python tests/data/make_sample_archive.py

The output is deterministic given the same TTS versions; the committed files are the
reference, regenerating is only needed when the dialogues change.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

SAMPLE_RATE = 16_000
OUT_DIR = Path(__file__).parent / "sample_archive"
DROP = "drop-2026-11-24"

# voice id -> how to synthesize it
VOICES = {
    "slt": ("flite", "slt"),
    "rms": ("flite", "rms"),
    "awb": ("flite", "awb"),
    "esf": ("espeak-ng", "en-us+f3"),
}

DIALOGUES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "interview 01.wav",
        [
            ("slt", "Good morning and welcome to the archive project."),
            ("rms", "Thank you. I am glad to be here today."),
            ("slt", "Can you tell me how the recordings were collected?"),
            ("rms", "We visited twelve villages over three summers with a small team."),
            ("slt", "That sounds like a lot of travel."),
            ("rms", "It was, but the stories were worth every mile."),
        ],
    ),
    (
        "meeting-02.flac",
        [
            ("awb", "Let us start with the budget for next year."),
            ("slt", "The numbers look better than we expected."),
            ("awb", "Good. What about the new storage servers?"),
            ("slt", "They arrive in March and the migration starts in April."),
            ("awb", "Please send the plan to the whole team by Friday."),
        ],
    ),
    (
        "radio_show_03.mp3",
        [
            ("rms", "You are listening to the evening news."),
            ("esf", "Heavy rain is expected across the northern coast tonight."),
            ("rms", "Drivers should take extra care on the mountain roads."),
            ("esf", "The weather will clear by tomorrow afternoon."),
            ("rms", "That is all for this hour. Thank you for listening."),
        ],
    ),
    (
        "podcast 04.m4a",
        [
            ("esf", "Welcome back to the garden podcast."),
            ("awb", "Today we talk about planting tomatoes in small spaces."),
            ("esf", "Do they really grow well on a balcony?"),
            ("awb", "Yes, if they get six hours of sun and plenty of water."),
            ("esf", "I will try that this spring."),
        ],
    ),
    (
        "lecture_05.ogg",
        [
            ("slt", "Today we begin the chapter on river systems."),
            ("awb", "Professor, will this be on the final exam?"),
            ("slt", "Everything we cover this week will be on the exam."),
            ("awb", "Then I will take careful notes."),
        ],
    ),
    (
        "town hall 06.mp4",
        [
            ("rms", "The council meeting is now open."),
            ("slt", "I would like to ask about the new library."),
            ("rms", "Construction will finish before the end of the summer."),
            ("esf", "Will the library be open on weekends?"),
            ("rms", "Yes, it will be open every day of the week."),
        ],
    ),
    (
        "call-07.flac",
        [
            ("esf", "Hello, this is the help desk. How can I help you?"),
            ("slt", "My laptop will not connect to the office network."),
            ("esf", "Please restart it and try the cable in the other port."),
            ("slt", "That worked. Thank you very much."),
        ],
    ),
    (
        "panel_08.wav",
        [
            ("awb", "Our panel today discusses the future of public transport."),
            ("rms", "Electric buses are already common in many cities."),
            ("esf", "But the trains still need much better funding."),
            ("awb", "Let us hear from the audience after a short break."),
        ],
    ),
]


def synthesize(voice: str, text: str) -> np.ndarray:
    """One utterance as float32 mono at 16 kHz, leading and trailing silence trimmed."""
    engine, name = VOICES[voice]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "utt.wav"
        if engine == "flite":
            cmd = ["flite", "-voice", name, "-t", text, "-o", str(path)]
        else:
            cmd = ["espeak-ng", "-v", name, "-s", "150", "-w", str(path), text]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[loud[0] : loud[-1] + 1]
    return 0.6 * audio / max(1e-6, float(np.abs(audio).max()))


def build_dialogue(turns: list[tuple[str, str]], rng: np.random.Generator):
    pieces = [np.zeros(int(0.6 * SAMPLE_RATE), np.float32)]
    truth = []
    cursor = len(pieces[0])
    for voice, text in turns:
        utt = synthesize(voice, text)
        truth.append(
            {
                "speaker": voice,
                "start_s": round(cursor / SAMPLE_RATE, 3),
                "end_s": round((cursor + len(utt)) / SAMPLE_RATE, 3),
                "text": text,
            }
        )
        gap = np.zeros(int(rng.uniform(0.35, 0.8) * SAMPLE_RATE), np.float32)
        pieces += [utt, gap]
        cursor += len(utt) + len(gap)
    pieces.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    # a faint noise floor, as in real recordings; fixed seed keeps the files reproducible
    audio += rng.normal(0, 0.0015, audio.shape).astype(np.float32)
    return np.clip(audio, -1, 1), truth


AUDIO_CODECS = {
    ".wav": ("wav", "pcm_s16le", 16_000, "s16"),
    ".flac": ("flac", "flac", 16_000, "s16"),
    ".mp3": ("mp3", "libmp3lame", 16_000, "s16p"),
    ".m4a": ("ipod", "aac", 16_000, "fltp"),
    ".ogg": ("ogg", "libopus", 48_000, "flt"),
    ".mp4": ("mp4", "aac", 16_000, "fltp"),
}


def encode(audio: np.ndarray, path: Path, with_video: bool = False) -> None:
    """Write ``audio`` (16 kHz float32 mono) to ``path`` in the container its suffix names."""
    fmt, codec, rate, sample_fmt = AUDIO_CODECS[path.suffix]
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, SAMPLE_RATE, rate).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as container:
        if with_video:
            video = container.add_stream("mpeg4", rate=10)
            video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if codec == "libmp3lame":
            stream.bit_rate = 48_000
        resampler = av.AudioResampler(format=sample_fmt, layout="mono", rate=rate)
        frame_len = 960 if codec == "libopus" else 1024
        for i in range(0, len(audio), frame_len):
            chunk = audio[i : i + frame_len]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        container.mux(stream.encode(None))
        if with_video:
            n_frames = int(len(audio) / rate * 10)
            for i in range(n_frames):
                shade = np.full((120, 160, 3), (i * 3) % 255, np.uint8)
                vframe = av.VideoFrame.from_ndarray(shade, format="rgb24")
                container.mux(video.encode(vframe))
            container.mux(video.encode(None))


def main() -> None:
    rng = np.random.default_rng(20261124)
    out = OUT_DIR / DROP
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, turns in DIALOGUES:
        audio, turn_truth = build_dialogue(turns, rng)
        path = out / name
        encode(audio, path, with_video=path.suffix == ".mp4")
        truth[f"{DROP}/{name}"] = {
            "duration_s": round(len(audio) / SAMPLE_RATE, 3),
            "text": " ".join(t["text"] for t in turn_truth),
            "speakers": sorted({t["speaker"] for t in turn_truth}),
            "turns": turn_truth,
        }
        print(f"{path.name}: {len(audio) / SAMPLE_RATE:.1f} s, {path.stat().st_size} bytes")
    (OUT_DIR / "truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

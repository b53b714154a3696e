"""Seeded messy drops: many speakers, awkward layouts, noise, odd containers, with the truth.

``make_drop(target, seed, n_files=8, long_file_s=None)`` writes ``n_files`` media files (plus
one long file when ``long_file_s`` is given) into the folder ``target`` (the drop) and
``target/truth.json`` (not a media name: the pipeline ignores it), and returns that truth.
Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same
files, byte for byte, and the same truth (given the same TTS and PyAV builds)::

    .venv/bin/python tests/data/make_messy_drop.py OUT --seed 7 --files 8 [--long-file-minutes 30]

What a drop holds (``n_files`` >= 4; fewer drop the special files last-first):

- speech files (``n_files - 3``), 1-6 speakers each: synthetic voices (espeak-ng variants
  such as ``en-us+f3``, ``en-gb-scotland+m2``; flite ``slt``/``rms``/``awb``/``kal``) and real
  people cut from pyannote.audio's ``sample.wav`` (its STM transcript and RTTM turns: two
  people on a phone line, ``pyannote-sample:speaker90`` / ``speaker91``), beside each other in
  one file. Each file is a few sections: ``turns`` (pauses 0.3-2.5 s between turns),
  ``monologue`` (one speaker, pauses of 1-6 s inside the turn), ``rapid`` (turns of 0.3-2 s,
  gaps of 0-0.3 s), ``overlap`` (the next speaker starts before the current one ends),
  ``one_word`` ("Yes.", "Okay."), ``real_conversation`` (a stretch of the real recording with
  its own overlaps). Speakers get different levels; some files get a white or pink noise bed
  at 5-30 dB SNR (the others a faint noise floor);
- one of them is stereo with one speaker per channel (``turns[*].channel``);
- a silence-only file and a hum + noise file (``expected: no_speech``);
- a video without an audio track (``expected: skipped``).

Containers: wav (8/16/22.05/44.1/48 kHz), flac, mp3, m4a (AAC), ogg (Vorbis), opus, mp4, mkv and
webm with a video track; the speech files take them in a seeded order, so a drop of 12 files
has every one. Some mono content is written as two identical channels. Encoded with PyAV only
(no system ffmpeg), with FFmpeg's bitexact flags so the bytes are reproducible.

``long_file_s``: one more file of that length (e.g. 1800 for 30 min), looping a small set of
synthesized turns with pauses, overlaps and rapid stretches (cheap: the clips are made once).

``truth.json``: ``{"seed", "n_files", "long_file_s", "generator_version", "real_sources",
"files": {name: {...}}}``; per file ``name, container, format, audio_codec, video_codec,
sample_rate, channels, duration_s, expected ("ok" | "no_speech" | "skipped"), speakers,
turns [{start_s, end_s, speaker, text, section, real, channel?}], layout [{kind, start_s,
end_s}], noise, speech_s``. Times are seconds from the start of the media; ``text`` is null
for the few real turns nobody transcribed.

Needs ``espeak-ng`` and ``flite`` on PATH (Debian: ``apt-get install espeak-ng flite``) and the
project venv (PyAV, soxr, pyannote.audio for the real sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from importlib.metadata import version as package_version
from importlib.util import find_spec
from pathlib import Path

import av
import numpy as np
import soxr

SR = 16_000  # composition rate; each file is resampled to its own rate when encoded
GENERATOR_VERSION = 1
FPS = 5
VIDEO_SIZE = (96, 64)  # width, height

# -- voices ---------------------------------------------------------------------------------
# voice id -> (engine, engine voice, espeak-ng words per minute)
SYNTH_VOICES: dict[str, tuple[str, str, int]] = {
    "espeak-ng:en-us+f3": ("espeak-ng", "en-us+f3", 165),
    "espeak-ng:en-us+m7": ("espeak-ng", "en-us+m7", 150),
    "espeak-ng:en+m3": ("espeak-ng", "en+m3", 170),
    "espeak-ng:en+f1": ("espeak-ng", "en+f1", 155),
    "espeak-ng:en-gb+f4": ("espeak-ng", "en-gb+f4", 160),
    "espeak-ng:en-gb-scotland+m2": ("espeak-ng", "en-gb-scotland+m2", 145),
    "espeak-ng:en-gb-x-rp+f2": ("espeak-ng", "en-gb-x-rp+f2", 175),
    "espeak-ng:en-gb-x-gbclan+m4": ("espeak-ng", "en-gb-x-gbclan+m4", 160),
    "espeak-ng:en-029+f5": ("espeak-ng", "en-029+f5", 150),
    "espeak-ng:en-gb-x-gbcwmd+m1": ("espeak-ng", "en-gb-x-gbcwmd+m1", 180),
    "flite:slt": ("flite", "slt", 0),
    "flite:rms": ("flite", "rms", 0),
    "flite:awb": ("flite", "awb", 0),
    "flite:kal": ("flite", "kal", 0),
}
REAL_SOURCE = "pyannote-sample"

# -- text -----------------------------------------------------------------------------------
SENTENCES = [
    "Good morning and welcome to the archive project.",
    "Can you tell me how the recordings were collected?",
    "We visited twelve villages over three summers with a small team.",
    "The budget for next year looks better than we expected.",
    "What time does the last train leave for the coast?",
    "Please send the plan to the whole team by Friday afternoon.",
    "Heavy rain is expected across the northern hills tonight.",
    "Did anyone check the backup before the servers were moved?",
    "The new library will open on the first of September.",
    "I think the second draft reads much better than the first one.",
    "Why did the meeting with the suppliers get cancelled?",
    "Our panel today discusses the future of public transport.",
    "The trains still need much better funding in the rural areas.",
    "How many people signed up for the workshop in March?",
    "She spent twenty years working as a nurse in the city hospital.",
    "Could you repeat the last part of the question, please?",
    "The bridge was closed for repairs during most of the winter.",
    "We should write down every decision we make today.",
    "Is the report going to be ready before the board meets?",
    "My grandmother kept every letter she ever received.",
    "The harvest was late this year because of the cold spring.",
    "Where did you put the keys to the storage room?",
    "Three of the interviews were recorded in a noisy kitchen.",
    "Let us take a short break and come back in ten minutes.",
    "The museum wants copies of the photographs for its exhibition.",
    "Have you ever tried to fix a bicycle chain without tools?",
    "Most of the students finished the exam in under an hour.",
    "I remember the night the power went out across the whole valley.",
    "The committee will vote on the proposal next Tuesday.",
    "Which of these two designs do you prefer?",
    "The ferry runs twice a day, except on public holidays.",
    "We lost about a week because the parts arrived damaged.",
    "Do you know who wrote the original version of this song?",
    "The children planted tomatoes and beans behind the school.",
    "Nobody expected the weather to change so quickly.",
    "Is there anything else you would like to add before we finish?",
    "The old factory is being turned into apartments and a market.",
    "He told me the story of how the village got its name.",
    "Can we move the call to Thursday morning instead?",
    "The numbers in the second table do not add up.",
    "Every recording needs a name, a date and a short description.",
    "When did you first notice the problem with the sound?",
    "The road to the airport is much quieter after nine in the evening.",
    "I would like to thank everyone who helped organise this event.",
    "What happens to the files after the project ends?",
    "The doctor said the recovery would take at least six weeks.",
    "Our neighbours have kept bees in their garden for years.",
    "Would it help if I sent you the notes from last week?",
    "The price of coffee has gone up again this month.",
    "We drove for hours before we found a place to stay.",
    "Is the microphone on, or should I speak a bit louder?",
    "The festival brings thousands of visitors to the town every summer.",
    "I am not sure the river is safe for swimming after the storm.",
    "How long have you been working on this translation?",
    "The map in the hallway shows all the routes we walked.",
    "They repaired the roof of the church with money from the village.",
    "Shall we start with the questions from the audience?",
    "The software update fixed most of the problems we reported.",
    "My brother moved to the mountains to work as a guide.",
    "Who is responsible for the equipment during the weekend?",
]
SHORT = [
    "Right, go on.",
    "Which one?",
    "The blue folder.",
    "Got it.",
    "On Tuesday.",
    "No, the other one.",
    "Are you sure?",
    "Fair enough.",
    "Not yet.",
    "After lunch.",
    "Me too.",
    "How much?",
    "About forty.",
    "That is fine.",
    "Really? When?",
    "Just now.",
    "Same here.",
    "Why not?",
    "Good point.",
    "In the car.",
    "Maybe later.",
    "I agree.",
    "Wait, what?",
    "Next week.",
]
ONE_WORD = [
    "Yes.",
    "Okay.",
    "No.",
    "Right.",
    "Sure.",
    "Exactly.",
    "Really?",
    "Thanks.",
    "Hmm.",
    "Absolutely.",
    "Indeed.",
    "Nope.",
]
# a few composed sentences on top of the fixed ones, for variety across seeds
SUBJECTS = [
    "The engineer",
    "My sister",
    "The driver",
    "Our teacher",
    "The mayor",
    "A farmer",
    "The pilot",
    "Your cousin",
]
VERBS = ["found", "painted", "sold", "borrowed", "lost", "repaired", "described", "photographed"]
OBJECTS = ["an old radio", "the green boat", "a broken clock", "the kitchen table", "two bicycles", "the front gate"]
TIMES = ["last winter", "on Sunday", "before the storm", "in the morning", "after the concert", "yesterday"]
QUESTION_STARTS = ["Why do you think", "Do you remember when", "Is it true that", "Who told you that"]


def _sentence(rng: np.random.Generator) -> str:
    if rng.random() < 0.3:
        parts = [
            SUBJECTS[rng.integers(len(SUBJECTS))],
            VERBS[rng.integers(len(VERBS))],
            OBJECTS[rng.integers(len(OBJECTS))],
            TIMES[rng.integers(len(TIMES))],
        ]
        if rng.random() < 0.35:
            start = QUESTION_STARTS[rng.integers(len(QUESTION_STARTS))]
            return f"{start} {parts[0].lower()} {' '.join(parts[1:])}?"
        return " ".join(parts) + "."
    return SENTENCES[rng.integers(len(SENTENCES))]


# -- synthesis ------------------------------------------------------------------------------
class MissingTool(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [t for t in ("espeak-ng", "flite") if shutil.which(t) is None]


# (voice, text) -> utterance, shared by the drops made in one process (TTS is deterministic:
# a second drop of the same seed, as the tests make, synthesizes nothing)
_UTTERANCES: dict[tuple[str, str], np.ndarray] = {}
_UTTERANCES_MAX = 5_000


class Synth:
    """Synthesized utterances (float32, 16 kHz, trimmed, peak 1.0), each (voice, text) once."""

    def __init__(self, workdir: Path):
        missing = missing_tools()
        if missing:
            raise MissingTool(f"{', '.join(missing)} not on PATH (Debian: apt-get install espeak-ng flite)")
        self.workdir = workdir
        self.cache = _UTTERANCES
        self.calls = 0

    def __call__(self, voice: str, text: str) -> np.ndarray:
        key = (voice, text)
        if key not in self.cache:
            if len(self.cache) >= _UTTERANCES_MAX:
                self.cache.clear()
            audio = self._make(voice, text)
            audio.setflags(write=False)  # shared: never changed in place
            self.cache[key] = audio
        return self.cache[key]

    def _make(self, voice: str, text: str) -> np.ndarray:
        engine, name, wpm = SYNTH_VOICES[voice]
        path = self.workdir / "utt.wav"
        if engine == "flite":
            cmd = ["flite", "-voice", name, "-t", text, "-o", str(path)]
        else:
            cmd = ["espeak-ng", "-v", name, "-s", str(wpm), "-w", str(path), text]
        subprocess.run(cmd, check=True, capture_output=True)
        self.calls += 1
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        audio = pcm.astype(np.float32) / 32768.0
        if rate != SR:
            audio = soxr.resample(audio, rate, SR).astype(np.float32)
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        if loud.size:
            audio = audio[loud[0] : loud[-1] + 1]
        return (audio / max(1e-6, float(np.abs(audio).max()))).astype(np.float32)


# -- real speech ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RealClip:
    start_s: float  # in the source recording
    end_s: float
    speaker: str  # voice id, e.g. pyannote-sample:speaker90
    text: str | None


@dataclass
class RealSource:
    name: str
    samples: np.ndarray  # float32, 16 kHz
    clips: list[RealClip]  # transcribed utterances (STM), plus reference turns nobody transcribed
    version: str

    def speakers(self) -> list[str]:
        return sorted({c.speaker for c in self.clips})

    def cut(self, start_s: float, end_s: float) -> np.ndarray:
        return self.samples[int(round(start_s * SR)) : int(round(end_s * SR))]


def _real_source() -> RealSource:
    """pyannote.audio's sample (a phone call of two people), found without importing
    pyannote.audio (which would import torch)."""
    spec = find_spec("pyannote.audio")
    if spec is None or spec.origin is None:
        raise MissingTool("pyannote.audio is not installed (its sample.wav is the real speech)")
    folder = Path(spec.origin).parent / "sample"
    with wave.open(str(folder / "sample.wav")) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    rttm = []
    for line in (folder / "sample.rttm").read_text().splitlines():
        p = line.split()
        if len(p) >= 8 and p[0] == "SPEAKER":
            rttm.append((float(p[3]), float(p[3]) + float(p[4]), p[7]))
    stm = []
    for line in (folder / "sample.stm").read_text().splitlines():
        p = line.split(maxsplit=5)
        if len(p) >= 6:
            stm.append((float(p[3]), float(p[4]), p[2], p[5].strip()))

    def overlap(a0, a1, b0, b1):
        return max(0.0, min(a1, b1) - max(a0, b0))

    # STM names (Diane, Sheila) -> RTTM labels (speaker90, speaker91), by shared time
    names = {}
    for name in {s[2] for s in stm}:
        scores: dict[str, float] = {}
        for s0, s1, n, _ in stm:
            if n == name:
                for r0, r1, label in rttm:
                    scores[label] = scores.get(label, 0.0) + overlap(s0, s1, r0, r1)
        names[name] = max(sorted(scores), key=lambda k: scores[k])
    clips = [RealClip(s0, s1, f"{REAL_SOURCE}:{names[n]}", text) for s0, s1, n, text in stm]
    for r0, r1, label in rttm:  # reference turns without a transcript (a backchannel)
        voice = f"{REAL_SOURCE}:{label}"
        if not any(c.speaker == voice and overlap(r0, r1, c.start_s, c.end_s) > 0 for c in clips):
            clips.append(RealClip(r0, r1, voice, None))
    clips.sort(key=lambda c: (c.start_s, c.speaker))
    return RealSource(REAL_SOURCE, samples, clips, package_version("pyannote.audio"))


# -- containers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    ext: str
    fmt: str  # FFmpeg muxer
    audio_codecs: tuple[str, ...]
    video_codec: str | None = None


CONTAINERS = {
    "wav": Container("wav", "wav", ("pcm_s16le",)),
    "flac": Container("flac", "flac", ("flac",)),
    "mp3": Container("mp3", "mp3", ("libmp3lame",)),
    "m4a": Container("m4a", "ipod", ("aac",)),
    "ogg": Container("ogg", "ogg", ("vorbis",)),
    "opus": Container("opus", "ogg", ("libopus",)),
    "mp4": Container("mp4", "mp4", ("aac",), "mpeg4"),
    "mkv": Container("mkv", "matroska", ("aac", "flac", "libopus"), "mpeg4"),
    "webm": Container("webm", "webm", ("libopus", "vorbis"), "libvpx"),
}
RATES = {
    "pcm_s16le": (8_000, 16_000, 22_050, 44_100, 48_000),
    "flac": (8_000, 16_000, 22_050, 44_100, 48_000),
    "libmp3lame": (8_000, 16_000, 22_050, 44_100, 48_000),
    "aac": (16_000, 22_050, 44_100, 48_000),
    "vorbis": (22_050, 44_100, 48_000),
    "libopus": (16_000, 24_000, 48_000),
}
STEREO_CONTAINERS = ("wav", "flac", "m4a", "ogg", "mkv")
VIDEO_ONLY_CONTAINERS = ("mp4", "mkv", "webm")
FORCED_STEREO = ("vorbis",)  # FFmpeg's Vorbis encoder writes two channels only


@dataclass
class Encoding:
    container: str
    audio_codec: str | None
    sample_rate: int | None
    channels: int  # 0: no audio track

    @property
    def spec(self) -> Container:
        return CONTAINERS[self.container]


def _choose_encoding(rng, container: str, *, stereo: bool = False, video_only: bool = False) -> Encoding:
    spec = CONTAINERS[container]
    if video_only:
        return Encoding(container, None, None, 0)
    codec = spec.audio_codecs[rng.integers(len(spec.audio_codecs))]
    rates = RATES[codec]
    rate = int(rates[rng.integers(len(rates))])
    channels = 2 if stereo or codec in FORCED_STEREO or rng.random() < 0.2 else 1
    return Encoding(container, codec, rate, channels)


def encode(path: Path, enc: Encoding, audio: np.ndarray | None, duration_s: float) -> None:
    """Write ``audio`` ((channels, n) float32 at 16 kHz; None: no audio track) to ``path`` as
    ``enc`` says, with a small video track when the container has one; bitexact."""
    spec = enc.spec
    with av.open(str(path), "w", format=spec.fmt, options={"fflags": "+bitexact"}) as c:
        vstream = astream = None
        if spec.video_codec:
            vstream = c.add_stream(spec.video_codec, rate=FPS)
            vstream.width, vstream.height = VIDEO_SIZE
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.flags |= av.codec.context.Flags.bitexact
            vstream.codec_context.thread_count = 1
            if spec.video_codec == "libvpx":
                vstream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        pcm = None
        if audio is not None:
            rate = enc.sample_rate
            options = {"strict": "experimental"} if enc.audio_codec == "vorbis" else {}
            astream = c.add_stream(enc.audio_codec, rate=rate, options=options)
            astream.layout = "stereo" if enc.channels == 2 else "mono"
            astream.codec_context.flags |= av.codec.context.Flags.bitexact
            astream.codec_context.thread_count = 1
            if enc.audio_codec == "libmp3lame":
                astream.bit_rate = 32_000 if rate <= 16_000 else 64_000
            data = audio if audio.shape[0] == enc.channels else np.repeat(audio[:1], enc.channels, axis=0)
            # (n, channels), packed, at the file's rate
            pcm = data.T if rate == SR else soxr.resample(data.T, SR, rate)
            pcm = np.ascontiguousarray(np.clip(pcm, -1.0, 1.0), dtype=np.float32)
        n_frames = int(np.ceil(duration_s * FPS)) if vstream is not None else 0
        block = 1.0  # seconds of audio per step; video frames interleaved by time
        steps = int(np.ceil(duration_s / block)) if duration_s > 0 else 0
        frame_i = 0
        for step in range(steps):
            if pcm is not None:
                a0, a1 = int(step * block * enc.sample_rate), int(min((step + 1) * block, duration_s) * enc.sample_rate)
                a1 = len(pcm) if step == steps - 1 else min(a1, len(pcm))
                for i in range(a0, a1, 4096):
                    chunk = pcm[i : min(i + 4096, a1)]
                    frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout=astream.layout.name)
                    frame.sample_rate = enc.sample_rate
                    frame.pts = i
                    frame.time_base = Fraction(1, enc.sample_rate)
                    c.mux(astream.encode(frame))
            if vstream is not None:
                while frame_i < n_frames and frame_i / FPS < (step + 1) * block:
                    shade = (40 + 25 * (frame_i // FPS)) % 200
                    img = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), shade, np.uint8)
                    img[:, : (frame_i % VIDEO_SIZE[0]) + 1, 0] = 220  # a moving bar
                    vframe = av.VideoFrame.from_ndarray(img, format="rgb24")
                    vframe.pts = frame_i
                    c.mux(vstream.encode(vframe))
                    frame_i += 1
        if astream is not None:
            c.mux(astream.encode(None))
        if vstream is not None:
            c.mux(vstream.encode(None))


# -- composition ----------------------------------------------------------------------------
@dataclass
class Placed:
    start: int  # sample at 16 kHz
    audio: np.ndarray
    speaker: str
    text: str | None
    section: str
    real: bool
    channel: int = 0


@dataclass
class Timeline:
    items: list[Placed] = field(default_factory=list)
    sections: list[dict] = field(default_factory=list)
    cursor: int = 0  # where the next item goes by default (end of the latest item)

    def place(self, start: int, item_audio: np.ndarray, speaker, text, section, real, channel=0) -> int:
        start = max(0, start)
        self.items.append(Placed(start, item_audio, speaker, text, section, real, channel))
        self.cursor = max(self.cursor, start + len(item_audio))
        return start + len(item_audio)


class Composer:
    """Draws one file's speech from the seeded RNG, onto a :class:`Timeline`."""

    def __init__(self, rng: np.random.Generator, synth: Synth, real: RealSource, gains: dict[str, float]):
        self.rng, self.synth, self.real, self.gains = rng, synth, real, gains
        self.channels: dict[str, int] = {}

    def s(self, seconds: float) -> int:
        return int(round(seconds * SR))

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def utterance(self, speaker: str, kind: str, max_s: float | None = None) -> tuple[np.ndarray, str | None, bool]:
        """(audio with the speaker's gain, text, real?) of one turn of ``kind`` (sentence,
        short, word) for ``speaker``."""
        rng = self.rng
        if speaker.startswith(REAL_SOURCE + ":"):
            clips = [c for c in self.real.clips if c.speaker == speaker and c.text]
            if kind != "sentence":  # short turns: the shortest clips, cut to fit
                clips = sorted(clips, key=lambda c: c.end_s - c.start_s)[:3]
            clip = clips[rng.integers(len(clips))]
            audio = self.real.cut(clip.start_s, clip.end_s)
            text = clip.text
            if max_s is not None and len(audio) > self.s(max_s):
                audio, text = audio[: self.s(max_s)], None  # cut mid-utterance: text unknown
            peak = max(1e-6, float(np.abs(audio).max()))
            return (audio / peak * self.gains[speaker]).astype(np.float32), text, True
        if kind == "word":
            text = ONE_WORD[rng.integers(len(ONE_WORD))]
        elif kind == "short":
            text = SHORT[rng.integers(len(SHORT))] if rng.random() < 0.75 else ONE_WORD[rng.integers(len(ONE_WORD))]
        else:
            text = _sentence(rng)
        audio = self.synth(speaker, text)
        return audio * np.float32(self.gains[speaker]), text, False

    def _pick(self, speakers: list[str], previous: str | None) -> str:
        choices = [s for s in speakers if s != previous] or speakers
        return choices[self.rng.integers(len(choices))]

    def section(self, tl: Timeline, kind: str, speakers: list[str]) -> None:
        rng, s = self.rng, self.s
        start = tl.cursor
        prev: str | None = None
        if kind == "turns":
            cursor = tl.cursor
            for i in range(int(rng.integers(3, 8))):
                who = self._pick(speakers, prev)
                audio, text, real = self.utterance(who, "sentence")
                if i:
                    cursor += s(self.uniform(0.3, 2.5))
                cursor = tl.place(cursor, audio, who, text, kind, real, self.channels.get(who, 0))
                prev = who
        elif kind == "monologue":
            who = speakers[rng.integers(len(speakers))]
            cursor = tl.cursor
            for i in range(int(rng.integers(3, 7))):
                audio, text, real = self.utterance(who, "sentence")
                if i:
                    cursor += s(self.uniform(1.0, 6.0) if rng.random() < 0.7 else self.uniform(0.2, 0.6))
                cursor = tl.place(cursor, audio, who, text, kind, real, self.channels.get(who, 0))
        elif kind == "rapid":
            cursor = tl.cursor
            for i in range(int(rng.integers(5, 13))):
                who = self._pick(speakers, prev)
                audio, text, real = self.utterance(who, "short", max_s=2.0)
                if i:
                    cursor += s(self.uniform(0.0, 0.3))
                cursor = tl.place(cursor, audio, who, text, kind, real, self.channels.get(who, 0))
                prev = who
        elif kind == "overlap":
            cursor = tl.cursor
            last_len = 0
            for i in range(int(rng.integers(3, 7))):
                who = self._pick(speakers, prev)
                audio, text, real = self.utterance(who, "sentence" if rng.random() < 0.7 else "short")
                if i:  # start before the previous speaker ends
                    cursor -= s(self.uniform(0.2, max(0.25, min(1.5, 0.6 * last_len / SR))))
                begin = cursor
                cursor = tl.place(cursor, audio, who, text, kind, real, self.channels.get(who, 0))
                last_len = cursor - begin
                prev = who
        elif kind == "one_word":
            cursor = tl.cursor
            for i in range(int(rng.integers(4, 9))):
                who = self._pick(speakers, prev) if len(speakers) > 1 else speakers[0]
                audio, text, real = self.utterance(who, "word", max_s=1.0)
                if i:
                    cursor += s(self.uniform(0.2, 1.2))
                cursor = tl.place(cursor, audio, who, text, kind, real, self.channels.get(who, 0))
                prev = who
        elif kind == "real_conversation":
            clips = self.real.clips
            i = int(rng.integers(0, len(clips) - 3))
            j = int(min(len(clips), i + rng.integers(3, 8)))
            w0 = max(0.0, min(c.start_s for c in clips[i:j]) - 0.15)
            w1 = min(len(self.real.samples) / SR, max(c.end_s for c in clips[i:j]) + 0.15)
            window = self.real.cut(w0, w1)
            gain = float(np.mean([self.gains[c.speaker] for c in clips[i:j]]))
            window = (window / max(1e-6, float(np.abs(window).max())) * gain).astype(np.float32)
            base = tl.cursor
            for c in clips:  # every turn of the window, clipped to it (a backchannel too)
                a, b = max(c.start_s, w0), min(c.end_s, w1)
                if b - a < 0.05:
                    continue
                whole = (a, b) == (c.start_s, c.end_s)
                # a silent marker of the turn's length: the window's audio is placed once, below
                tl.place(
                    base + s(a - w0), np.zeros(s(b - a), np.float32), c.speaker, c.text if whole else None, kind, True
                )
            tl.place(base, window, "", None, kind, True)  # the window itself (not a turn)
        else:
            raise ValueError(kind)
        tl.sections.append({"kind": kind, "start_s": round(start / SR, 3), "end_s": round(tl.cursor / SR, 3)})


def _render(tl: Timeline, n: int, channels: int) -> np.ndarray:
    out = np.zeros((channels, n), np.float32)
    for it in tl.items:
        end = min(n, it.start + len(it.audio))
        out[it.channel if channels > 1 else 0, it.start : end] += it.audio[: end - it.start]
    return out


def _turns(tl: Timeline, stereo: bool) -> list[dict]:
    turns = []
    for it in tl.items:
        if not it.speaker:
            continue
        t = {
            "start_s": round(it.start / SR, 3),
            "end_s": round((it.start + len(it.audio)) / SR, 3),
            "speaker": it.speaker,
            "text": it.text,
            "section": it.section,
            "real": it.real,
        }
        if stereo:
            t["channel"] = it.channel
        turns.append(t)
    turns.sort(key=lambda t: (t["start_s"], t["end_s"], t["speaker"]))
    return turns


def _speech_mask(tl: Timeline, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for it in tl.items:
        if it.speaker:
            mask[it.start : min(n, it.start + len(it.audio))] = True
    return mask


def noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-RMS white or pink noise; long beds loop a 20 s block (cheap, and nobody hears it)."""
    block = min(n, 20 * SR)
    white = rng.standard_normal(block).astype(np.float32)
    if kind == "pink":
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        white = np.fft.irfft(spec / np.sqrt(f), n=block).astype(np.float32)
    white /= max(1e-9, float(np.sqrt(np.mean(np.square(white, dtype=np.float64)))))
    return np.resize(white, n) if n > block else white


def _add_noise(rng, mix: np.ndarray, mask: np.ndarray, bed: bool) -> dict | None:
    n = mix.shape[1]
    if bed:
        kind = "pink" if rng.random() < 0.5 else "white"
        snr = round(float(rng.uniform(5.0, 30.0)), 1)
        speech = mix[:, mask] if mask.any() else mix
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
        level = rms / 10 ** (snr / 20)
        mix += noise(rng, kind, n)[None, :] * np.float32(level)
        return {"kind": kind, "snr_db": snr}
    level = float(rng.uniform(1e-4, 8e-4))  # a faint floor, as in real recordings
    mix += rng.standard_normal(mix.shape, dtype=np.float32) * np.float32(level)
    return {"kind": "floor", "rms": round(level, 5)}


def _limit(mix: np.ndarray) -> np.ndarray:
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    if peak > 0.95:
        mix *= np.float32(0.95 / peak)
    return mix


# -- files ----------------------------------------------------------------------------------
SPEECH_STEMS = [
    "interview",
    "meeting",
    "call",
    "podcast",
    "lecture",
    "town hall",
    "standup",
    "panel",
    "focus group",
    "radio show",
    "Team sync (final)",
    "voicemail",
]
SECTION_KINDS = ("turns", "monologue", "rapid", "overlap", "one_word")


def _speech_file(rng, synth: Synth, real: RealSource, *, stereo: bool) -> tuple[np.ndarray, dict]:
    """One speech file at 16 kHz: (audio (channels, n), truth without container fields)."""
    n_speakers = 2 if stereo else int(rng.integers(1, 7))
    n_real = 0
    if rng.random() < 0.4:
        n_real = int(min(n_speakers, rng.integers(1, 3)))
    real_voices = list(rng.permutation(real.speakers())[:n_real])
    synth_ids = sorted(SYNTH_VOICES)
    voices = [str(v) for v in rng.permutation(synth_ids)[: n_speakers - n_real]] + [str(v) for v in real_voices]
    gains = {v: float(rng.uniform(0.25, 0.8)) for v in [*voices, *real.speakers()]}
    comp = Composer(rng, synth, real, gains)
    if stereo:
        comp.channels = {v: i for i, v in enumerate(voices)}
    kinds = [k for k in SECTION_KINDS if n_speakers > 1 or k not in ("rapid", "overlap")]
    plan = [kinds[i] for i in rng.integers(len(kinds), size=int(rng.integers(2, 5)))]
    if n_real == 2 and not stereo and rng.random() < 0.6:
        plan.insert(int(rng.integers(0, len(plan) + 1)), "real_conversation")
    tl = Timeline(cursor=comp.s(comp.uniform(0.3, 2.0)))
    for i, kind in enumerate(plan):
        if i:
            tl.cursor += comp.s(comp.uniform(0.5, 3.0))
        comp.section(tl, kind, voices)
    spoken = {it.speaker for it in tl.items if it.speaker}
    missing = [v for v in voices if v not in spoken]
    if missing:  # every chosen voice speaks
        tl.cursor += comp.s(comp.uniform(0.5, 2.0))
        comp.section(tl, "turns", missing)
    n = tl.cursor + comp.s(comp.uniform(0.3, 2.0))
    return _mixed(tl, rng, n, stereo, bed=lambda: not stereo and rng.random() < 0.45)


def _mixed(tl: Timeline, rng, n: int, stereo: bool, bed) -> tuple[np.ndarray, dict]:
    """The timeline rendered to ``n`` samples, a noise bed when ``bed()`` says so, and its truth."""
    mix = _render(tl, n, 2 if stereo else 1)
    mask = _speech_mask(tl, n)
    noise_info = _add_noise(rng, mix, mask, bed=bed())
    _limit(mix)
    turns = _turns(tl, stereo)
    truth = {
        "expected": "ok",
        "speakers": sorted({t["speaker"] for t in turns}),
        "turns": turns,
        "layout": tl.sections,
        "noise": noise_info,
        "speech_s": round(float(mask.sum()) / SR, 3),
        "duration_s": round(n / SR, 6),
    }
    return mix, truth


def _no_speech_file(rng, kind: str) -> tuple[np.ndarray, dict]:
    n = int(round(float(rng.uniform(4.0, 25.0)) * SR))
    if kind == "silence":
        mix = np.zeros((1, n), np.float32)
        info = {"kind": "digital_silence"}
    else:
        hz = 50 if rng.random() < 0.5 else 60
        t = np.arange(n) / SR
        hum = sum((0.5**h) * np.sin(2 * np.pi * hz * (h + 1) * t + float(rng.uniform(0, 6.28))) for h in range(5))
        level = float(rng.uniform(0.03, 0.2))
        bed = "pink" if rng.random() < 0.5 else "white"
        mix = (hum / np.abs(hum).max() * level + noise(rng, bed, n) * level * 0.3)[None, :].astype(np.float32)
        info = {"kind": f"hum+{bed}", "hum_hz": hz, "level": round(level, 4)}
    truth = {"expected": "no_speech", "speakers": [], "turns": [], "layout": [], "noise": info, "speech_s": 0.0}
    truth["duration_s"] = round(n / SR, 6)
    return _limit(mix), truth


def _long_file(rng, synth: Synth, real: RealSource, seconds: float) -> tuple[np.ndarray, dict]:
    """``seconds`` of meeting: 2-4 voices, each with a small set of clips reused in loops."""
    n_syn = int(rng.integers(2, 4))
    voices = [str(v) for v in rng.permutation(sorted(SYNTH_VOICES))[:n_syn]]
    if rng.random() < 0.5:
        voices.append(str(real.speakers()[rng.integers(len(real.speakers()))]))
    gains = {v: float(rng.uniform(0.3, 0.8)) for v in [*voices, *real.speakers()]}
    comp = Composer(rng, synth, real, gains)
    # the clips to loop: a fixed pool per voice, so synthesis stays a few seconds at any length
    pool: dict[str, list[tuple[np.ndarray, str | None, bool]]] = {}
    for v in voices:
        pool[v] = [comp.utterance(v, "sentence") for _ in range(8)]
        pool[v] += [comp.utterance(v, "short", max_s=2.0) for _ in range(6)]
    n_total = int(round(seconds * SR))
    tl = Timeline(cursor=comp.s(comp.uniform(0.5, 2.0)))
    end_margin = comp.s(1.0)
    prev = None
    while True:
        kind = ("turns", "turns", "rapid", "overlap", "monologue", "long_pause")[rng.integers(6)]
        start = tl.cursor
        cursor = tl.cursor
        stop = False
        n_turns = int(rng.integers(3, 9))
        for i in range(n_turns):
            who = voices[rng.integers(len(voices))] if kind == "monologue" and i == 0 else comp._pick(voices, prev)
            if kind == "monologue" and i:
                who = prev
            items = pool[who]
            idx = int(rng.integers(8, len(items))) if kind == "rapid" else int(rng.integers(0, 8))
            audio, text, real = items[idx]
            if i:
                if kind == "rapid":
                    cursor += comp.s(comp.uniform(0.0, 0.3))
                elif kind == "overlap":
                    cursor -= comp.s(comp.uniform(0.2, 1.0))
                elif kind == "monologue":
                    cursor += comp.s(comp.uniform(1.0, 6.0))
                else:
                    cursor += comp.s(comp.uniform(0.3, 2.5))
            if cursor + len(audio) > n_total - end_margin:
                stop = True
                break
            cursor = tl.place(cursor, audio, who, text, kind if kind != "long_pause" else "turns", real)
            prev = who
        if tl.cursor > start:
            tl.sections.append(
                {
                    "kind": kind if kind != "long_pause" else "turns",
                    "start_s": round(start / SR, 3),
                    "end_s": round(tl.cursor / SR, 3),
                }
            )
        if stop:
            break
        tl.cursor += comp.s(comp.uniform(5.0, 20.0) if kind == "long_pause" else comp.uniform(0.5, 3.0))
        if tl.cursor >= n_total - end_margin:
            break
    return _mixed(tl, rng, n_total, False, bed=lambda: rng.random() < 0.5)


def _plan(rng, n_files: int) -> list[tuple[str, str]]:
    """(kind, container) per file, in drop order: speech files first take every container in a
    seeded order, then stereo, silence, noise and video-only replace the tail."""
    specials = ["video_only", "noise", "silence"]  # dropped first when n_files is small
    n_special = min(len(specials), max(0, n_files - 1))
    n_speech = n_files - n_special
    order = [str(c) for c in rng.permutation(sorted(CONTAINERS))]
    containers = [order[i % len(order)] for i in range(n_speech)]
    kinds = ["speech"] * n_speech
    if n_speech >= 2:  # the first speech file whose container takes two channels
        i = next((i for i, c in enumerate(containers) if c in STEREO_CONTAINERS), None)
        if i is None:
            i = n_speech - 1
            containers[i] = STEREO_CONTAINERS[rng.integers(len(STEREO_CONTAINERS))]
        kinds[i] = "stereo"
    files = list(zip(kinds, containers))
    for kind in reversed(specials[len(specials) - n_special :]):
        if kind == "video_only":
            files.append((kind, VIDEO_ONLY_CONTAINERS[rng.integers(len(VIDEO_ONLY_CONTAINERS))]))
        elif kind == "silence":
            files.append((kind, ("flac", "wav", "m4a")[rng.integers(3)]))
        else:
            files.append((kind, ("wav", "mp3", "ogg", "flac", "opus")[rng.integers(5)]))
    return [files[i] for i in rng.permutation(len(files))]


def _name(rng, kind: str, index: int, ext: str) -> str:
    if kind == "silence":
        stem = ("silence", "empty room", "test tone off")[rng.integers(3)]
    elif kind == "noise":
        stem = ("hum", "room tone", "line noise")[rng.integers(3)]
    elif kind == "video_only":
        stem = ("screen capture", "b-roll", "slides")[rng.integers(3)]
    elif kind == "long":
        stem = "long recording"
    else:
        stem = SPEECH_STEMS[rng.integers(len(SPEECH_STEMS))]
    sep = (" ", "_", "-")[rng.integers(3)]
    return f"{stem}{sep}{index:02d}.{ext}"


def make_drop(target: Path, seed: int, n_files: int = 8, long_file_s: float | None = None) -> dict:
    """Write a messy drop of ``n_files`` (+1 long file when ``long_file_s``) into ``target``
    and ``target/truth.json``; returns the truth. Deterministic in ``seed``."""
    if n_files < 1:
        raise ValueError("n_files must be at least 1")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    real = _real_source()
    files: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="messy-drop-") as tmp:
        synth = Synth(Path(tmp))
        plan = _plan(rng, n_files)
        if long_file_s:
            plan.append(("long", ("flac", "mp3", "m4a")[rng.integers(3)]))
        for index, (kind, container) in enumerate(plan, start=1):
            name = _name(rng, kind, index, CONTAINERS[container].ext)
            if kind in ("speech", "stereo"):
                audio, truth = _speech_file(rng, synth, real, stereo=kind == "stereo")
                enc = _choose_encoding(rng, container, stereo=kind == "stereo")
            elif kind in ("silence", "noise"):
                audio, truth = _no_speech_file(rng, kind)
                enc = _choose_encoding(rng, container)
            elif kind == "long":
                audio, truth = _long_file(rng, synth, real, float(long_file_s))
                enc = _choose_encoding(rng, container)
                enc.sample_rate, enc.channels = (SR if enc.audio_codec != "libopus" else 48_000), 1
                if enc.audio_codec in FORCED_STEREO:
                    enc.channels = 2
            else:  # video without audio
                dur = round(float(rng.uniform(3.0, 10.0)) * FPS) / FPS
                audio = None
                truth = {
                    "expected": "skipped",
                    "speakers": [],
                    "turns": [],
                    "layout": [],
                    "noise": None,
                    "speech_s": 0.0,
                }
                truth["duration_s"] = dur
                enc = _choose_encoding(rng, container, video_only=True)
            encode(target / name, enc, audio, truth["duration_s"])
            spec = enc.spec
            files[name] = {
                "name": name,
                "kind": kind,
                "container": container,
                "format": spec.fmt,
                "audio_codec": enc.audio_codec,
                "video_codec": spec.video_codec,
                "sample_rate": enc.sample_rate,
                "channels": enc.channels,
                **truth,
            }
    truth = {
        "generator": "tests/data/make_messy_drop.py",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_files": n_files,
        "long_file_s": long_file_s,
        "real_sources": {REAL_SOURCE: f"pyannote/audio/sample/sample.wav (pyannote.audio {real.version})"},
        "files": dict(sorted(files.items())),
    }
    (target / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the drop folder to write (created)")
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--long-file-minutes", type=float, default=None)
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"seed: {seed}", flush=True)
    t0 = time.perf_counter()
    try:
        truth = make_drop(args.out, seed, args.files, args.long_file_minutes * 60 if args.long_file_minutes else None)
    except MissingTool as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, f in truth["files"].items():
        size = (args.out / name).stat().st_size
        rate = f"{f['sample_rate'] / 1000:g} kHz" if f["sample_rate"] else "-"
        print(
            f"{size:>11,}  {f['duration_s']:8.2f} s  {f['expected']:9s} {f['audio_codec'] or 'no audio':10s} {rate:>9s}"
            f" {f['channels']}ch  {len(f['speakers'])} spk {len(f['turns']):4d} turns  {name}"
        )
    print(
        f"{len(truth['files'])} files, truth: {args.out / 'truth.json'} ({time.perf_counter() - t0:.1f} s, seed {seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

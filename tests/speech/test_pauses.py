"""Words next to pauses, on generated speech (espeak-ng): the first word after several
seconds of noise or silence starts where the speech does, not back inside the pause, and a
short utterance between silences is kept and transcribed."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber
from opentranscribe_pipeline.speech.decode import SAMPLE_RATE, activity, decode, is_silent
from opentranscribe_pipeline.speech.models import resolve_asr_model

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make speech-tools)"
)


def espeak(tmp_path, text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng at 16 kHz, without the silence it leaves around it."""
    path = tmp_path / f"{abs(hash((text, voice, speed)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    x = decode(str(path)).samples
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 1]


def bed(seconds: float, level: float, seed: int) -> np.ndarray:
    """Silence (level 0) or white noise of RMS ``level``."""
    n = int(seconds * SAMPLE_RATE)
    return (np.random.default_rng(seed).normal(0, level, n) if level else np.zeros(n)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    with Transcriber(resolve_asr_model("packaged:tiny.en"), AsrOptions()) as t:
        yield t


@pytest.mark.parametrize("pause_s,level", [(6.0, 0.0), (8.0, 0.003), (11.0, 0.01)])
def test_first_word_after_a_pause_starts_with_the_speech(tiny, tmp_path, pause_s, level):
    """One VAD chunk holding a sentence, a long pause (silence, or noise the VAD does not call
    speech) and another sentence: Whisper's alignment pulled the second sentence's first word
    back over the pause (a word of 3-5 s)."""
    first = espeak(tmp_path, "Good morning everyone, thank you for coming.")
    second = espeak(tmp_path, "People say the weather will change tomorrow.")
    parts = [bed(1.0, level, 1), first, bed(pause_s, level, 2), second, bed(1.0, level, 3)]
    samples = np.concatenate(parts)
    onset = sum(len(p) for p in parts[:3]) / SAMPLE_RATE
    noise = bed(len(samples) / SAMPLE_RATE, level, 4)[: len(samples)]
    tx = tiny.transcribe(samples + noise if level else samples)
    words = [w for s in tx.segments for w in s.words]
    people = [w for w in words if w.word.strip(".,").lower() == "people"]
    assert people, [w.word for w in words]
    assert abs(people[0].start_s - onset) < 0.5, (people[0], onset)
    # no word spans the pause, every word keeps a plausible length
    assert all(w.end_s - w.start_s < 1.5 for w in words), [w for w in words if w.end_s - w.start_s >= 1.5]
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)


def test_words_are_kept_out_of_the_pauses_and_to_a_plausible_length():
    """clip_to_speech on its own: a word reaching back over a pause starts with the speech
    after it, one reaching forward ends with the speech before it; where the VAD heard no
    pause (noise it took for speech) the chunk's first and last words are held to
    max_word_s, from the side the stretching comes from."""
    from opentranscribe_pipeline.speech.align import Word, clip_to_speech, max_word_s

    def w(text, a, b):
        return Word(text, a, b, 0.9, "cross_attention")

    islands = [(1.0, 3.0), (10.9, 14.0)]
    words = (w("Good", 1.1, 1.4), w("morning.", 1.4, 6.0), w("People", 4.0, 11.2), w("say", 11.2, 11.5))
    assert clip_to_speech(words, islands) == (
        w("Good", 1.1, 1.4),
        w("morning.", 1.4, 3.0),  # ended inside the pause: ends with the speech
        w("People", 10.9, 11.2),  # started inside the pause: starts with the speech
        w("say", 11.2, 11.5),
    )
    assert clip_to_speech((w("um", 5.0, 6.0),), islands) == (w("um", 5.0, 6.0),)  # wholly in a pause
    # no pause heard: "People" 0.0-11.2 in noise keeps its end and a plausible length
    capped = clip_to_speech((w("People", 0.0, 11.2), w("say", 11.2, 11.5), w("so.", 11.5, 19.0)), [(0.0, 20.0)])
    assert capped[0] == w("People", round(11.2 - max_word_s("People"), 3), 11.2) and max_word_s("People") == 1.5
    assert capped[1] == w("say", 11.2, 11.5) and capped[2] == w("so.", 11.5, 11.5 + max_word_s("so."))
    # without VAD scores only the chunk's edges are bounded (both plausible here)
    assert clip_to_speech(words, None) == words


def _hello() -> np.ndarray:
    """A real "Hello." (0.28 s) cut from pyannote.audio's sample call, where it stands alone."""
    from pathlib import Path

    import pyannote.audio

    call = decode(str(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav")).samples
    return call[int(6.68 * SAMPLE_RATE) : int(6.96 * SAMPLE_RATE)]


@pytest.mark.parametrize("word,gain", [("hello", 0.1), ("hello", 0.03), ("yes", 0.01)])
def test_a_short_quiet_word_between_silences_is_kept_and_transcribed(tiny, tmp_path, word, gain):
    """One 0.3 s word (peak -44 to -58 dBFS) between 2 s silences: under 0.25 s of it is above
    -60 dBFS, which ingest called silent (the file was never transcribed); the VAD and
    Whisper hear it, and so does is_silent."""
    clip = _hello() if word == "hello" else espeak(tmp_path, "yes")
    assert 0.25 <= len(clip) / SAMPLE_RATE <= 0.5
    samples = np.concatenate([np.zeros(2 * SAMPLE_RATE), clip * gain, np.zeros(2 * SAMPLE_RATE)]).astype(np.float32)
    assert activity(samples) * len(samples) / SAMPLE_RATE < 0.25  # the old rule: silent
    assert not is_silent(samples)
    tx = tiny.transcribe(samples)
    assert [s.text.strip(".!").lower() for s in tx.segments] == [word], tx.segments
    (w,) = tx.segments[0].words
    assert 1.9 <= w.start_s < w.end_s <= 2.1 + len(clip) / SAMPLE_RATE


def test_silence_and_dither_are_silent():
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(5 * SAMPLE_RATE, np.float32))
    assert is_silent(np.zeros(0, np.float32))
    dither = (rng.integers(-1, 2, 5 * SAMPLE_RATE) / 32768).astype(np.float32)  # +-1 LSB of 16 bits
    assert is_silent(dither)
    room = rng.normal(0, 10 ** (-70 / 20), 5 * SAMPLE_RATE).astype(np.float32)  # a -70 dBFS noise floor
    assert not is_silent(room)

"""Synthesize the translation fixtures: French, German and Spanish dialogues of two espeak-ng
voices with known sentences and reference English translations, plus one English dialogue
with a known overlap (an interruption) for the analytics tests.

Writes ``tests/data/translation/<lang>.flac`` and ``tests/data/translation/truth.json``
(per file: language, turns with speaker, start_s, end_s, text and, for the foreign ones,
the reference English). Needs the Debian package ``espeak-ng`` and the project venv; run
from the project root::

    .venv/bin/python tests/data/make_translation_fixtures.py

Deterministic for one espeak-ng version; the committed files are the reference.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 16_000
OUT = Path(__file__).parent / "translation"

# (language, voice A, voice B, [(voice, sentence, reference English)])
DIALOGUES = {
    "fr": (
        "fr+m3",
        "fr+f3",
        [
            (
                "a",
                "Bonjour, je suis très content de vous voir aujourd'hui.",
                "Hello, I am very happy to see you today.",
            ),
            (
                "b",
                "Merci beaucoup. Le train était en retard ce matin.",
                "Thank you very much. The train was late this morning.",
            ),
            (
                "a",
                "Nous allons parler de la nouvelle bibliothèque de la ville.",
                "We are going to talk about the new library of the city.",
            ),
            (
                "b",
                "Elle ouvre au printemps avec beaucoup de livres pour les enfants.",
                "It opens in the spring with many books for the children.",
            ),
        ],
    ),
    "de": (
        "de+m3",
        "de+f3",
        [
            ("a", "Guten Morgen, wie geht es Ihnen heute?", "Good morning, how are you today?"),
            ("b", "Danke, sehr gut. Das Wetter ist heute schön.", "Thank you, very good. The weather is nice today."),
            (
                "a",
                "Wir sprechen über das neue Krankenhaus in der Stadt.",
                "We are talking about the new hospital in the city.",
            ),
            (
                "b",
                "Es wird im nächsten Jahr mit zweihundert Betten eröffnet.",
                "It will open next year with two hundred beds.",
            ),
        ],
    ),
    "es": (
        "es+m3",
        "es+f3",
        [
            ("a", "Buenos días, gracias por venir a la reunión.", "Good morning, thank you for coming to the meeting."),
            (
                "b",
                "Con mucho gusto. Hoy hace mucho calor en la ciudad.",
                "With pleasure. Today it is very hot in the city.",
            ),
            (
                "a",
                "Queremos hablar del nuevo mercado cerca del río.",
                "We want to talk about the new market near the river.",
            ),
            (
                "b",
                "El mercado abre los sábados por la mañana con fruta fresca.",
                "The market opens on Saturdays in the morning with fresh fruit.",
            ),
        ],
    ),
}

# English, with a known overlap: B interrupts A 0.8 s before A's second turn ends.
OVERLAP = (
    "en-us+m3",
    "en-us+f4",
    [
        ("a", "Welcome to the planning meeting for the spring festival."),
        ("b", "Thank you. Are the tickets ready yet?"),
        ("a", "The tickets will be printed on Monday and sent out on Tuesday morning."),
        ("b", "Sorry, can I ask about the prices?"),  # starts 0.8 s before the previous turn ends
        ("a", "Of course. Adults pay ten and children pay five."),
    ],
    3,  # index of the interrupting turn
)


def synthesize(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "utt.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "145", "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[loud[0] : loud[-1] + 1]
    return 0.5 * audio / max(1e-6, float(np.abs(audio).max()))


def build(voices: dict[str, str], turns, interrupt_at: int | None = None, rng=None):
    """Mix the turns on one timeline: 0.5 s gaps, except the interrupting turn, which
    starts 0.8 s before the previous turn ends (both voices audible)."""
    placed, cursor = [], int(0.6 * SAMPLE_RATE)
    for i, turn in enumerate(turns):
        utt = synthesize(voices[turn[0]], turn[1])
        start = cursor
        if interrupt_at is not None and i == interrupt_at:
            start = placed[-1][1] + len(placed[-1][2]) - int(0.8 * SAMPLE_RATE)
        placed.append((turn, start, utt))
        cursor = max(cursor, start + len(utt)) + int(0.5 * SAMPLE_RATE)
    total = cursor + int(0.3 * SAMPLE_RATE)
    audio = np.zeros(total, np.float32)
    truth = []
    for turn, start, utt in placed:
        audio[start : start + len(utt)] += utt
        row = {
            "speaker": turn[0],
            "start_s": round(start / SAMPLE_RATE, 3),
            "end_s": round((start + len(utt)) / SAMPLE_RATE, 3),
            "text": turn[1],
        }
        if len(turn) > 2:
            row["english"] = turn[2]
        truth.append(row)
    audio += rng.normal(0, 0.001, audio.shape).astype(np.float32)
    return np.clip(audio, -1, 1), truth


def write_flac(path: Path, audio: np.ndarray) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from opentranscribe_pipeline.speech.decode import encode_flac

    path.write_bytes(encode_flac(audio))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261203)
    truth = {}
    for lang, (va, vb, turns) in DIALOGUES.items():
        audio, rows = build({"a": va, "b": vb}, turns, rng=rng)
        write_flac(OUT / f"{lang}.flac", audio)
        truth[f"{lang}.flac"] = {"language": lang, "duration_s": round(len(audio) / SAMPLE_RATE, 3), "turns": rows}
        print(f"{lang}.flac: {len(audio) / SAMPLE_RATE:.1f} s")
    va, vb, turns, at = OVERLAP
    audio, rows = build({"a": va, "b": vb}, turns, interrupt_at=at, rng=rng)
    write_flac(OUT / "overlap_en.flac", audio)
    truth["overlap_en.flac"] = {"language": "en", "duration_s": round(len(audio) / SAMPLE_RATE, 3), "turns": rows}
    print(f"overlap_en.flac: {len(audio) / SAMPLE_RATE:.1f} s")
    (OUT / "truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

"""A seeded drop of **real** speech with pauses, with its truth: who spoke when.

Built from the real recordings that ship in packages (``tests/data/real_speech.py``): the 14
AMI meeting excerpts of pyannote.audio's source distribution and pyannote.audio's own
sample, never synthetic voices. Per drop:

- ``as_recorded``: every AMI excerpt as recorded (meetings of 1-4 people) and the pyannote
  sample;
- ``monologue``: one real person's own speech (the reference's exclusive turns) cut into
  pieces of 1-8 s with pauses of 1-8 s between them (silence or a low noise bed): the pauses
  *inside* a person's turn that broke the statistics of issue 28;
- ``alternating``: two or three people from *different* recordings taking turns of 1-8 s
  with 0.2-1.0 s of silence between turns (issue 30's constructions);
- ``answering``: two people from different recordings answering each other with no pause.

Each file is written in a container chosen by the seed (WAV, FLAC, MP3, M4A, OGG, ...; the
encoder of ``make_messy_drop.py``), at its own sample rate. ``truth.json``: ``{"seed",
"generator": "real-speech/1", "files": {name: {"kind", "expected": "ok", "duration_s",
"speakers", "turns": [{start_s, end_s, speaker}]}}}``; speaker labels are the recordings' own (AMI
speaker ids, ``pyannote-sample:speaker90``), so the same person has one label in every file.

    .venv/bin/python tests/data/make_real_speech_drop.py /tmp/real-drop --seed 7
    .venv/bin/python benchmarks/messy_drops.py --real-speech --seed 7   # through `process`

Needs the AMI excerpts (``make real-speech`` fetches them once); exits 1 without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_speech  # noqa: E402
from make_messy_drop import CONTAINERS, _choose_encoding, encode  # noqa: E402

SR = real_speech.SAMPLE_RATE
GENERATOR = "real-speech/1"


def _voices(files: list[real_speech.RealFile]) -> dict[str, list[np.ndarray]]:
    """Each real person's exclusive speech (0.15 s clear of anyone else), as pieces of at
    least 1 s, keyed by the recording's speaker label."""
    voices: dict[str, list[np.ndarray]] = {}
    for f in files:
        for speaker in sorted({t.speaker for t in f.turns}):
            for a, b in real_speech.exclusive_speech(f, speaker, margin_s=0.15):
                if b - a >= 1.0:
                    voices.setdefault(speaker, []).append(f.samples[int(a * SR) : int(b * SR)])
    return voices


def _recording_of(files: list[real_speech.RealFile]) -> dict[str, str]:
    return {t.speaker: f.name for f in files for t in f.turns}


def voices_of(files: list[real_speech.RealFile]) -> tuple[dict[str, list[np.ndarray]], dict[str, str], list[str]]:
    """Each person's speech pieces, the recording each comes from, and the people with at least
    8 s of their own speech (those the constructions draw from)."""
    voices = _voices(files)
    talkers = sorted(v for v, pieces in voices.items() if sum(p.size for p in pieces) >= 8 * SR)
    return voices, _recording_of(files), talkers


def _gap(rng: np.random.Generator, seconds: float, noisy: bool) -> np.ndarray:
    n = int(seconds * SR)
    if not noisy:
        return np.zeros(n, np.float32)
    return (rng.normal(0, 10 ** (-50 / 20), n)).astype(np.float32)  # a -50 dBFS noise bed


def _turn(rng: np.random.Generator, pieces: list[np.ndarray], lo: float, hi: float) -> np.ndarray:
    piece = pieces[rng.integers(len(pieces))]
    want = int(rng.uniform(lo, hi) * SR)
    if piece.size <= want:
        return piece
    start = int(rng.integers(0, piece.size - want + 1))
    return piece[start : start + want]


def _compose(rng, people: list[str], voices, n_turns: int, gap: tuple[float, float], noisy: bool, cycle: bool):
    """``n_turns`` turns of 1-8 s by ``people`` (in turn, or one person only), ``gap`` seconds
    of silence (or noise) between them; the audio and its reference turns."""
    parts, turns, t = [_gap(rng, 0.5, noisy)], [], 0.5
    for i in range(n_turns):
        who = people[i % len(people)] if cycle else people[0]
        audio = _turn(rng, voices[who], 1.0, 8.0)
        turns.append({"start_s": round(t, 3), "end_s": round(t + audio.size / SR, 3), "speaker": who})
        parts.append(audio)
        t += audio.size / SR
        pause = float(rng.uniform(*gap))
        if pause > 0:
            parts.append(_gap(rng, pause, noisy))
            t += pause
    parts.append(_gap(rng, 0.5, noisy))
    return np.concatenate(parts).astype(np.float32), turns


def constructions(
    rng: np.random.Generator,
    *,
    monologues: int = 3,
    alternating: int = 3,
    answering: int = 1,
    as_recorded: bool = True,
    between=None,
):
    """The drop's files before encoding, in the drop's order: ``(stem, kind, audio, turns)``
    (audio float32 mono 16 kHz, turns as in truth.json). ``between(rng)`` runs after each file
    is made (``make_drop`` draws its container there, from the same ``rng``), so the same seed
    gives the same people and cuts here as in a drop. Raises SystemExit without the AMI
    excerpts."""
    files = real_speech.pyannote_debug_set()
    if files is None:
        raise SystemExit("the AMI excerpts are not fetched: run `make real-speech` first")
    sample = real_speech.pyannote_sample()
    between = between or (lambda rng: None)
    for f in [*files, sample]:
        if as_recorded:
            turns = [{"start_s": t.start_s, "end_s": t.end_s, "speaker": t.speaker} for t in f.turns]
            yield f.name, "as_recorded", f.samples.astype(np.float32), turns
            between(rng)
    voices, recording, talkers = voices_of([*files, sample])
    for i in range(monologues):
        who = talkers[int(rng.integers(len(talkers)))]
        audio, turns = _compose(rng, [who], voices, int(rng.integers(4, 9)), (1.0, 8.0), bool(i % 2), cycle=False)
        yield f"monologue-{i:02d}", "monologue", audio, turns
        between(rng)
    for i in range(alternating):
        people = strangers(rng, talkers, recording, 2 + i % 2)
        audio, turns = _compose(rng, people, voices, int(rng.integers(8, 13)), (0.2, 1.0), False, cycle=True)
        yield f"alternating-{len(people)}p-{i:02d}", "alternating", audio, turns
        between(rng)
    for i in range(answering):
        audio, turns = _compose(rng, strangers(rng, talkers, recording, 2), voices, 10, (0.0, 0.0), False, cycle=True)
        yield f"answering-{i:02d}", "answering", audio, turns
        between(rng)


def strangers(rng: np.random.Generator, talkers: list[str], recording: dict[str, str], k: int) -> list[str]:
    """``k`` people, each from a different recording."""
    order = [str(v) for v in rng.permutation(talkers)]
    out: list[str] = []
    for v in order:
        if all(recording[v] != recording[o] for o in out):
            out.append(v)
        if len(out) == k:
            return out
    raise ValueError(f"fewer than {k} people from different recordings")


def make_drop(target: Path, seed: int, *, monologues: int = 3, alternating: int = 3, answering: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    target.mkdir(parents=True, exist_ok=True)
    truth: dict = {"seed": seed, "generator": GENERATOR, "files": {}}
    containers = sorted(CONTAINERS)
    made = constructions(rng, monologues=monologues, alternating=alternating, answering=answering)
    for stem, kind, audio, turns in made:
        container = containers[int(rng.integers(len(containers)))]
        enc = _choose_encoding(rng, container)
        name = f"{stem}.{CONTAINERS[container].ext}"
        encode(target / name, enc, audio.reshape(1, -1), audio.size / SR)  # (channels, n)
        truth["files"][name] = {
            "kind": kind,
            "expected": "ok",
            "container": container,
            "duration_s": round(audio.size / SR, 3),
            "speakers": sorted({t["speaker"] for t in turns}),
            "turns": turns,
        }
    (target / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def container_draws(rng: np.random.Generator) -> None:
    """The draws ``make_drop`` makes for a file's container and encoding (so that
    ``constructions(rng, between=container_draws)`` gives a drop's audio without encoding)."""
    container = sorted(CONTAINERS)[int(rng.integers(len(CONTAINERS)))]
    _choose_encoding(rng, container)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the drop folder to write (created)")
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    truth = make_drop(args.out, seed)
    print(f"seed {seed}: {len(truth['files'])} files of real speech in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real speech with a reference, from packages (for calibrating speaker thresholds).

Two sources, both real recordings with a "who spoke when" reference (RTTM):

- ``pyannote_sample()``: ``pyannote/audio/sample/sample.wav`` + ``sample.rttm``, shipped in
  the pyannote.audio wheel (always installed): one 30 s conversation of two people;
- ``pyannote_debug_set()``: the 14 files of pyannote.audio's "Debug" protocol
  (``tests/data/*.wav`` + ``debug.*.rttm``, 30 s each, AMI meeting excerpts, CC BY 4.0) that
  ship in pyannote.audio's source distribution on PyPI. They are fetched once with pip
  (``pip download --no-binary :all: pyannote.audio==<installed>``) into
  ``$OPENTRANSCRIBE_CACHE/real-speech`` and extracted; ``None`` when pip cannot reach the
  registry. Speaker labels are AMI's speaker ids, consistent across files.

Nothing is downloaded at import; the pipeline itself never uses this module.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class RefTurn:
    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True)
class RealFile:
    name: str
    samples: np.ndarray  # float32 mono 16 kHz
    turns: list[RefTurn]

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})


def read_rttm(path: Path) -> dict[str, list[RefTurn]]:
    out: dict[str, list[RefTurn]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, dur = float(parts[3]), float(parts[4])
            out.setdefault(parts[1], []).append(RefTurn(start, start + dur, parts[7]))
    return out


def _load(path: Path) -> np.ndarray:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
    return data.mean(axis=1)


def pyannote_sample() -> RealFile:
    import pyannote.audio

    folder = Path(pyannote.audio.__file__).parent / "sample"
    turns = read_rttm(folder / "sample.rttm")["sample"]
    return RealFile("pyannote-sample", _load(folder / "sample.wav"), turns)


def default_cache() -> Path:
    from opentranscribe_pipeline.settings import model_cache_dir

    return model_cache_dir() / "real-speech"


def pyannote_debug_set(cache: Path | None = None) -> list[RealFile] | None:
    """The Debug protocol's 14 real files, or None if the sdist cannot be had."""
    cache = cache or default_cache()
    release = version("pyannote.audio")
    data = cache / f"pyannote_audio-{release}" / "tests" / "data"
    if not (data / "debug.train.rttm").exists():
        cache.mkdir(parents=True, exist_ok=True)
        sdist = cache / f"pyannote_audio-{release}.tar.gz"
        if not sdist.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            cmd += ["-d", str(cache), f"pyannote.audio=={release}"]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError):
                return None
            if not sdist.exists():
                return None
        prefix = f"pyannote_audio-{release}/tests/data/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(cache, members=members, filter="data")
    turns: dict[str, list[RefTurn]] = {}
    for rttm in sorted(data.glob("debug.*.rttm")):
        turns.update(read_rttm(rttm))
    files = []
    for uri, file_turns in sorted(turns.items()):
        wav = data / f"{uri}.wav"
        if wav.exists():
            files.append(RealFile(f"ami-debug-{uri}", _load(wav), file_turns))
    return files or None


def exclusive_speech(file: RealFile, speaker: str, *, margin_s: float = 0.0) -> list[tuple[float, float]]:
    """Intervals where ``speaker`` talks and nobody else does (per the reference)."""
    mine = sorted((t.start_s, t.end_s) for t in file.turns if t.speaker == speaker)
    others = sorted((t.start_s - margin_s, t.end_s + margin_s) for t in file.turns if t.speaker != speaker)
    out = []
    for start, end in mine:
        pieces = [(start, end)]
        for o_start, o_end in others:
            nxt = []
            for a, b in pieces:
                if o_end <= a or o_start >= b:
                    nxt.append((a, b))
                    continue
                if o_start > a:
                    nxt.append((a, o_start))
                if o_end < b:
                    nxt.append((o_end, b))
            pieces = nxt
        out.extend((a, b) for a, b in pieces if b - a > 0.05)
    return out


def cut(samples: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    parts = [samples[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in intervals]
    parts = [p for p in parts if p.size]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def pieces_of(samples: np.ndarray, seconds: float) -> list[np.ndarray]:
    """``samples`` cut into consecutive pieces of ``seconds`` (the last, shorter one dropped)."""
    n = int(seconds * SAMPLE_RATE)
    return [samples[i : i + n] for i in range(0, len(samples) - n + 1, n)]


if __name__ == "__main__":
    # `make test` runs this before the suite: the AMI excerpts are fetched by the setup step,
    # never in the middle of a test. Exit 1 when they cannot be had (CI then fails instead of
    # skipping the tests that need them).
    debug_set = pyannote_debug_set()
    if debug_set is None:
        print("real speech: pyannote.audio's source distribution (AMI excerpts) could not be fetched with pip")
        sys.exit(1)
    print(f"real speech: {len(debug_set)} AMI excerpts in {default_cache()}, and pyannote.audio's sample")

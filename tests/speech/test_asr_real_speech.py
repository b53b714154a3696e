"""Real speech that once failed a whole file in transcription.

An AMI excerpt (``trn09``, from pyannote.audio's source distribution) stored as AAC in MP4,
16 kHz stereo, as the seeded real-speech drop (``make_real_speech_drop.py``, seed 7) wrote it:
CTranslate2 returned no alignment pairs for one VAD chunk, faster-whisper's
``find_alignment`` then indexed an empty array (``IndexError: boolean index did not match``)
and the file got no transcript at all. Now that chunk alone gets an empty alignment (its words
timed from their segment) and the rest of the file keeps its word timings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from opentranscribe_pipeline.speech.asr import AsrOptions, Transcriber
from opentranscribe_pipeline.speech.decode import decode
from opentranscribe_pipeline.speech.models import resolve_asr_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

import real_speech  # noqa: E402
from make_messy_drop import Encoding, encode  # noqa: E402


@pytest.fixture(scope="module")
def trn09_as_mp4(tmp_path_factory) -> Path:
    files = real_speech.pyannote_debug_set()
    if files is None:
        pytest.skip("the AMI excerpts are not fetched (make real-speech)")
    [trn09] = [f for f in files if f.name == "ami-debug-trn09"]
    path = tmp_path_factory.mktemp("real") / "ami-debug-trn09.mp4"
    encode(path, Encoding("mp4", "aac", 16_000, 2), trn09.samples.reshape(1, -1), trn09.samples.size / 16_000)
    return path


def test_a_chunk_without_alignment_does_not_lose_the_file(trn09_as_mp4):
    samples = decode(str(trn09_as_mp4)).samples
    with Transcriber(resolve_asr_model("packaged:tiny.en"), AsrOptions(device="cpu", compute_type="int8")) as t:
        tx = t.transcribe(samples)
    words = [w for s in tx.segments for w in s.words]
    assert len(words) > 50  # 30 s of a meeting: the file is transcribed, not failed
    duration = samples.size / 16_000
    assert all(0.0 <= w.start_s <= w.end_s <= duration + 0.01 for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)

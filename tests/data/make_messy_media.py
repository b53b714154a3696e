"""Hostile and messy media for the ingest tests, built from the sample archive with PyAV.

Every file is small and made in well under a second, so tests build them into ``tmp_path``
(nothing is committed)::

    .venv/bin/python tests/data/make_messy_media.py /tmp/messy   # to look at them

- ``silence_bomb(path)``: three hours of 8 kHz digital silence in ~27 KB of FLAC (65,535-sample
  blocks); ``lie=True`` zeroes STREAMINFO's sample count ("unknown"), so only decoding finds
  out how long it is;
- ``mp3_with_tail(path, tail)``: ``radio_show_03.mp3`` with bytes appended (zero bytes,
  random junk, an ID3v1 tag, an APEv2 tag: :data:`TAILS`);
- ``two_tracks(path, default=...)``: a video container with two audio tracks, track 0 one
  sample dialogue and track 1 another (``default``: which track is flagged default).
"""

from __future__ import annotations

import struct
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_DROP = Path(__file__).parent / "sample_archive" / "drop-2026-11-24"
MP3 = SAMPLE_DROP / "radio_show_03.mp3"


def id3v1() -> bytes:
    tag = b"TAG" + b"Evening news".ljust(30, b"\0") + b"Radio".ljust(30, b"\0") + b"Archive".ljust(30, b"\0")
    return tag + b"2026" + b"recorded live".ljust(30, b"\0") + bytes([101])  # genre: speech


def ape_tag() -> bytes:
    """An APEv2 tag (header, one item, footer), as taggers append it to MP3s."""
    items = struct.pack("<II", 5, 0) + b"Title\0" + b"Radio"
    size = len(items) + 32  # items + footer

    def block(flags: int) -> bytes:
        return b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags) + b"\0" * 8

    return block(0xA0000000) + items + block(0x80000000)


TAILS = {
    "1 zero byte": b"\0",
    "3 zero bytes": b"\0\0\0",
    "2 KB random junk": np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
    "ID3v1 tag": id3v1(),
    "APEv2 tag": ape_tag(),
    "APEv2 + ID3v1 + 2 zero bytes": ape_tag() + id3v1() + b"\0\0",
}


def mp3_with_tail(path: Path, tail: bytes) -> Path:
    path.write_bytes(MP3.read_bytes() + tail)
    return path


def silence_bomb(path: Path, hours: float = 3.0, rate: int = 8_000, lie: bool = False) -> Path:
    """``hours`` of digital silence as FLAC with the largest blocks FLAC allows."""
    minute = np.zeros((1, rate * 60), np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        stream.codec_context.options = {"compression_level": "12", "frame_size": "65535"}
        for i in range(round(hours * 60)):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i * minute.shape[1]
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    if lie:  # STREAMINFO starts at byte 8; its 36-bit sample count ends at byte 8 + 18
        data = bytearray(path.read_bytes())
        data[8 + 13] &= 0xF0
        data[8 + 14 : 8 + 18] = b"\0\0\0\0"
        path.write_bytes(bytes(data))
    return path


def _pcm(name: str) -> np.ndarray:
    from opentranscribe_pipeline.speech.decode import decode

    return decode(str(SAMPLE_DROP / name)).samples


def two_tracks(
    path: Path,
    tracks: tuple[str, str] = ("interview 01.wav", "meeting-02.flac"),
    default: int | None = 0,
    codec: str = "aac",
) -> Path:
    """A video file (mp4/mkv, by ``path``'s suffix) with a short black video track and two
    audio tracks made from two sample files (16 kHz mono); ``default``: the audio track
    flagged default (None: neither)."""
    rate = 16_000
    audio = [_pcm(name) for name in tracks]
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=1)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        streams = []
        for i in range(len(audio)):
            s = container.add_stream(codec, rate=rate)
            s.layout = "mono"
            s.disposition = av.stream.Disposition.default if default == i else av.stream.Disposition(0)
            streams.append(s)
        for sec in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = sec
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for s, pcm in zip(streams, audio):
            ints = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
            step = 16_000
            for i in range(0, len(ints), step):
                frame = av.AudioFrame.from_ndarray(ints[None, i : i + step], format="s16", layout="mono")
                frame.sample_rate = rate
                frame.pts = i
                frame.time_base = Fraction(1, rate)
                container.mux(s.encode(frame))
            container.mux(s.encode(None))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "messy")
    out.mkdir(parents=True, exist_ok=True)
    silence_bomb(out / "silence bomb.flac")
    silence_bomb(out / "lying silence bomb.flac", lie=True)
    for label, tail in TAILS.items():
        mp3_with_tail(out / f"radio_show_03 + {label}.mp3", tail)
    two_tracks(out / "two tracks.mp4")
    two_tracks(out / "two tracks.mkv", codec="flac", default=1)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>9,}  {p.name}")

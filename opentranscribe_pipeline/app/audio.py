"""Audio for the review app: a media item's 16 kHz FLAC, whole (with HTTP Range) or a cut
WAV clip of ``[start, end]`` (Dagster-free).

The file is the one the ``audio`` table names for the media id (found through the media index:
one GET, then the batch's small ``audio`` table), checked by
:func:`~.security.inside_warehouse` before a byte is read.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import polars as pl

from ..query import NoMatch, find_media
from ..storage import Warehouse
from .security import OutsideWarehouse, inside_warehouse

MAX_CLIP_S = 300.0  # a search passage is well under this; longer asks are cut here
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class AudioMissing(LookupError):
    """The media item is known but its audio cannot be played; the message says why."""


@dataclass(frozen=True)
class AudioFile:
    media_id: str
    batch_id: str
    source_uri: str
    path: str  # warehouse path, checked to lie inside the root
    duration_s: float
    sample_rate: int
    local: bool

    def size(self, wh: Warehouse) -> int:
        return os.path.getsize(self.path) if self.local else len(wh.get_bytes(self.path))


def audio_row(wh: Warehouse, batch_id: str, media_id: str) -> dict | None:
    df = wh.read_table("audio", batch_id)
    if df is None or df.is_empty():
        return None
    rows = df.filter(pl.col("media_id") == media_id)
    return rows.row(0, named=True) if rows.height else None


def locate(wh: Warehouse, media_id: str) -> AudioFile:
    """The checked FLAC of ``media_id`` (a validated id). :class:`~..query.core.NoMatch` for an
    unknown id; :class:`AudioMissing` when the row or the file is gone or refused."""
    item = find_media(wh, media_id)  # NoMatch / Ambiguous for an unknown id
    row = audio_row(wh, item["batch_id"], media_id)
    if row is None:
        raise AudioMissing(f"no 16 kHz audio is recorded for this media item (batch {item['batch_id']})")
    try:
        path = inside_warehouse(wh, row["audio_uri"])
    except OutsideWarehouse as exc:
        raise AudioMissing(str(exc)) from None
    if (os.path.isfile(path) if wh.is_local else wh.exists(path)) is False:
        raise AudioMissing("the audio file of this media item is missing from the warehouse")
    return AudioFile(
        media_id,
        item["batch_id"],
        item["source_uri"],
        path,
        float(row["duration_s"]),
        int(row["sample_rate"]),
        wh.is_local,
    )


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive of one ``bytes=`` range, None for no header; ValueError for
    one that cannot be satisfied (the caller answers 416). Several ranges: the first."""
    if not header:
        return None
    m = RANGE_RE.match(header.split(",")[0].strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise ValueError(header)
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise ValueError(header)
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        raise ValueError(header)
    return first, min(last, size - 1)


def read_range(wh: Warehouse, audio: AudioFile, first: int, last: int, chunk: int = 1 << 16):
    """The bytes ``first..last`` of the file, in chunks (a generator for a streaming body)."""
    if not audio.local:
        yield wh.get_bytes(audio.path)[first : last + 1]
        return
    with open(audio.path, "rb") as f:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


def clip_wav(wh: Warehouse, audio: AudioFile, start_s: float, end_s: float) -> bytes:
    """``[start_s, end_s]`` of the file as 16-bit WAV (seeks in the FLAC; decodes only that)."""
    import soundfile as sf

    start_s = max(0.0, float(start_s))
    end_s = min(float(end_s), audio.duration_s, start_s + MAX_CLIP_S)
    if not end_s > start_s:
        raise ValueError(f"empty clip: {start_s:.2f}-{end_s:.2f} s of a {audio.duration_s:.2f} s file")
    source = audio.path if audio.local else io.BytesIO(wh.get_bytes(audio.path))
    with sf.SoundFile(source) as f:
        sr = f.samplerate
        f.seek(min(int(start_s * sr), f.frames))
        data = f.read(int(round((end_s - start_s) * sr)), dtype="int16")
    out = io.BytesIO()
    sf.write(out, data, sr, format="WAV", subtype="PCM_16")
    return out.getvalue()


__all__ = ["AudioFile", "AudioMissing", "NoMatch", "clip_wav", "locate", "parse_range", "read_range"]

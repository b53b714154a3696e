"""Probe and decode media with PyAV (FFmpeg's libraries, no system ffmpeg needed).

One pass over each file: probe the container, decode the best audio stream, resample to
16 kHz mono float32, and check that what decoded covers what the container declared (a
truncated upload decodes "fine" but short). Failures are :class:`MediaError`: a
:class:`MediaProblem` code to branch on, and a one-line detail naming the problem (what the
pipeline records in the file's ``error``); they never escape as FFmpeg's raw messages.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 16_000
# decoded audio shorter than this share of the declared duration means a cut-off file
MIN_COVERAGE = 0.97
COVERAGE_SLACK_S = 0.5

log = logging.getLogger(__name__)


class MediaProblem(StrEnum):
    """Why a file cannot become audio (a string: ``MediaProblem.TRUNCATED == "truncated"``)."""

    NOT_MEDIA = "not_media"  # FFmpeg cannot open it: not a media file, or empty
    NO_AUDIO = "no_audio"  # a media file without an audio stream (skipped, not failed)
    DECODE_ERROR = "decode_error"  # the audio stream breaks off with a decoding error
    NO_AUDIO_DATA = "no_audio_data"  # an audio stream that decodes to no samples
    TRUNCATED = "truncated"  # decodes, but to less than the container declares


class MediaError(Exception):
    """A file that cannot become audio. ``reason`` is a :class:`MediaProblem`, ``str()``
    the human-readable detail.

    ``skip`` is true when nothing is wrong with the file but it has nothing for us (a
    video without an audio track): the pipeline records it as ``skipped``, not ``failed``.
    """

    def __init__(self, reason: MediaProblem, detail: str, *, skip: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.skip = skip


@dataclass(frozen=True)
class MediaInfo:
    """What the container says about itself (before decoding)."""

    container: str
    duration_s: float | None
    bit_rate: int | None
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None


@dataclass(frozen=True)
class DecodedAudio:
    info: MediaInfo
    samples: np.ndarray  # (n,) float32 in [-1, 1] at SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _stream_duration(stream: av.stream.Stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _probe(container: av.container.InputContainer) -> MediaInfo:
    audio = container.streams.audio[0] if container.streams.audio else None
    video = next(
        (v for v in container.streams.video if not (v.disposition & av.stream.Disposition.attached_pic)),
        None,
    )
    duration = container.duration / av.time_base if container.duration else None
    if audio is not None and _stream_duration(audio):
        duration = _stream_duration(audio)
    fps = None
    if video is not None and video.average_rate:
        fps = float(video.average_rate)
    return MediaInfo(
        container=container.format.name,
        duration_s=duration,
        bit_rate=container.bit_rate or None,
        audio_codec=audio.codec_context.name if audio else None,
        sample_rate=audio.codec_context.sample_rate if audio else None,
        channels=audio.codec_context.channels if audio else None,
        video_codec=video.codec_context.name if video else None,
        width=video.codec_context.width if video else None,
        height=video.codec_context.height if video else None,
        fps=fps,
    )


def decode(source: str | BinaryIO, *, name: str = "") -> DecodedAudio:
    """Decode ``source`` (a path or a seekable binary file) to 16 kHz mono float32.

    Raises :class:`MediaError` for anything that is not decodable audio.
    """
    label = name or (source if isinstance(source, str) else "<stream>")
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(MediaProblem.NOT_MEDIA, f"not a readable media file ({exc.strerror or exc})") from None
    with container:
        info = _probe(container)
        if not container.streams.audio:
            what = f"video only: {info.video_codec} {info.width}x{info.height}" if info.video_codec else "no streams"
            raise MediaError(MediaProblem.NO_AUDIO, f"no audio stream ({what})", skip=True)
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples; broken pts must not drop audio
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            decoded_s = sum(len(c) for c in chunks) / SAMPLE_RATE
            raise MediaError(
                MediaProblem.DECODE_ERROR, f"decoding failed after {decoded_s:.1f} s: {exc.strerror or exc}"
            ) from None
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    decoded = DecodedAudio(info=info, samples=samples)
    if decoded.duration_s == 0:
        raise MediaError(MediaProblem.NO_AUDIO_DATA, "the audio stream decoded to no samples")
    declared = info.duration_s
    if declared and decoded.duration_s < declared * MIN_COVERAGE - COVERAGE_SLACK_S:
        raise MediaError(
            MediaProblem.TRUNCATED,
            f"truncated: decoded {decoded.duration_s:.1f} s of the {declared:.1f} s the container declares",
        )
    log.debug("decoded %s: %.1f s of %s", label, decoded.duration_s, info.audio_codec)
    return decoded


def encode_flac(samples: np.ndarray) -> bytes:
    """16 kHz mono float32 -> FLAC bytes (16-bit)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        step = 16_384
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + step], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = i
            frame.time_base = Fraction(1, SAMPLE_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def load_flac(data: bytes) -> np.ndarray:
    """FLAC bytes written by :func:`encode_flac` -> float32 samples."""
    return decode(io.BytesIO(data), name="flac").samples

"""Probe and decode media with PyAV (FFmpeg's libraries, no system ffmpeg needed).

One pass over each file: probe the container, decode the best audio stream, resample to
16 kHz mono float32, and check that what decoded covers what the container declared (a
truncated upload decodes "fine" but short). Failures are :class:`MediaError`: a
:class:`MediaProblem` code to branch on, and a one-line detail naming the problem (what the
pipeline records in the file's ``error``); they never escape as FFmpeg's raw messages.

Decoding is as tolerant as the ``ffmpeg`` command: a packet the decoder rejects (a damaged
frame, the 1-3 stray bytes or the junk after the last frame of many archived MP3s) is counted
in ``decode_warnings`` and skipped; damage followed by good audio is replaced by silence of
the damaged packets' duration, so later timestamps stay where they were; damage at the end is
dropped. A demuxer error ends the input (as ffmpeg does): fine if the audio before it covers
what the container declares, a ``decode_error`` otherwise. A file fails only when no usable
audio is left (nothing decodes, or most of its packets are damaged).

Hostile sizes are bounded: decoding stops (``too_long``) once the audio passes
``max_duration_s`` (default 12 h), or passes what the file's size makes plausible
(``implausible_duration``: fewer than ``min_bytes_per_second`` bytes per second, e.g. 293 KB of
FLAC that decodes to three hours of silence); a container that declares such a duration is
refused before anything is decoded. :func:`activity` is the cheap energy check run on the
16 kHz samples, :func:`is_silent` says whether the speech models can skip a file.
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
DEFAULT_MAX_DURATION_S = 12 * 3600.0
# fewer bytes per second of audio than any speech codec in use (Opus >= 6 kbit/s, Speex >=
# 2.15, AMR >= 4.75): a file decoding longer than its size allows at this rate is a bomb
DEFAULT_MIN_BYTES_PER_SECOND = 125.0
PLAUSIBLE_FLOOR_S = 600.0  # never called implausible below 10 minutes (tiny files, headers)
MAX_DAMAGED_SHARE = 0.5  # more damaged packets than this: no usable audio left
# the energy check: RMS of 30 ms frames of the 16 kHz samples against -60 dBFS
ACTIVITY_FRAME = 480
SILENCE_RMS = 10 ** (-60 / 20)
# a file is silent when not one 30 ms frame reaches this RMS (see is_silent)
SILENT_FILE_RMS = 10 ** (-80 / 20)

log = logging.getLogger(__name__)


class MediaProblem(StrEnum):
    """Why a file cannot become audio (a string: ``MediaProblem.TRUNCATED == "truncated"``)."""

    NOT_MEDIA = "not_media"  # FFmpeg cannot open it: not a media file, or empty
    NO_AUDIO = "no_audio"  # a media file without an audio stream (skipped, not failed)
    DECODE_ERROR = "decode_error"  # the audio stream breaks off with a decoding error
    NO_AUDIO_DATA = "no_audio_data"  # an audio stream that decodes to no samples
    TRUNCATED = "truncated"  # decodes, but to less than the container declares
    TOO_LONG = "too_long"  # longer than the configured ceiling on decoded duration
    IMPLAUSIBLE_DURATION = "implausible_duration"  # far longer than its size makes plausible


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
    decode_warnings: int = 0  # damaged packets skipped, junk at the end, a demuxer error
    audio_tracks: int = 1  # audio streams in the container
    audio_track: int = 0  # which of them was decoded (0-based, among the audio streams)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _stream_duration(stream: av.stream.Stream) -> float | None:
    # Matroska keeps no per-stream duration, but FFmpeg (and mkvmerge) tag each track with one
    # (FFmpeg may copy the container's, the longest track's, into a stream's ``duration``):
    # without the tag a shorter second audio track would look truncated
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), None)
    if tag:
        try:
            h, m, sec = tag.strip().split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def pick_audio_track(streams, wanted: int | None = None) -> int:
    """Index (among ``streams``, the container's audio streams) of the track to decode:
    ``wanted`` if the file has it, else the first flagged default, else the first."""
    if wanted is not None and 0 <= wanted < len(streams):
        return wanted
    for i, s in enumerate(streams):
        if s.disposition & av.stream.Disposition.default:
            return i
    return 0


def _probe(container: av.container.InputContainer, track: int = 0) -> MediaInfo:
    audio = container.streams.audio[track] if container.streams.audio else None
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


def activity(samples: np.ndarray, threshold: float = SILENCE_RMS) -> float:
    """Share of 30 ms frames whose RMS is above ``threshold`` (-60 dBFS): 0.0 is a silent
    file. One pass in blocks (no copy of hours of audio), about 0.1 s per hour."""
    n = len(samples) // ACTIVITY_FRAME
    if n == 0:
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) > threshold) if len(samples) else 0.0
    active = 0
    block = 2_000 * ACTIVITY_FRAME  # 1 minute
    limit = threshold * threshold * ACTIVITY_FRAME
    for start in range(0, n * ACTIVITY_FRAME, block):
        frames = samples[start : min(start + block, n * ACTIVITY_FRAME)].reshape(-1, ACTIVITY_FRAME)
        active += int(np.count_nonzero(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) > limit))
    return active / n


def is_silent(samples: np.ndarray) -> bool:
    """Nothing to hear: not one 30 ms frame with an RMS of -80 dBFS (16-bit dither and digital
    silence stay under it). The speech models hear far quieter speech than the -60 dBFS of
    :func:`activity`: a 0.3 s "Hello." cut from a real call and peaking at -62 dBFS, or an
    espeak-ng "yes" at -44 dBFS, has under 0.25 s of frames above -60 dBFS yet is found by
    the VAD and transcribed; a file holding only such a word must not be skipped as silent."""
    return activity(samples, SILENT_FILE_RMS) == 0.0


def _ceiling(
    size_bytes: int | None, max_duration_s: float | None, min_bytes_per_second: float | None
) -> tuple[float, MediaProblem, str]:
    """The most audio this file may decode to, what passing it means, and why it is the limit."""
    ceiling = max_duration_s if max_duration_s and max_duration_s > 0 else DEFAULT_MAX_DURATION_S
    problem, why = MediaProblem.TOO_LONG, f"the {ceiling / 3600:g} h ceiling on decoded duration"
    if size_bytes and min_bytes_per_second and min_bytes_per_second > 0:
        plausible = max(PLAUSIBLE_FLOOR_S, size_bytes / min_bytes_per_second)
        if plausible < ceiling:
            ceiling, problem = plausible, MediaProblem.IMPLAUSIBLE_DURATION
            why = (
                f"the {plausible / 60:.0f} min that {size_bytes:,} bytes make plausible "
                f"(at least {min_bytes_per_second:g} bytes per second of audio; a decompression bomb?)"
            )
    return ceiling, problem, why


class _Reader:
    """The caller's binary file as PyAV reads it. PyAV turns an exception raised in ``read``
    or ``seek`` into an FFmpeg error code and keeps the exception for later; FFmpeg carries on
    after a failed seek (it only costs it the duration estimate) and calls again, and PyAV
    then prints "PyAV library exception being dropped" and a traceback on stderr for each
    one. Here a failing ``seek`` is what it is to FFmpeg (an error code: the stream cannot
    seek) and a failing ``read`` is the end of the input, with the exception kept in
    ``error``, which :func:`decode` raises once FFmpeg has returned."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        try:
            return bool(self._file.seekable()) if hasattr(self._file, "seekable") else hasattr(self._file, "seek")
        except Exception:  # noqa: BLE001 - a closed or broken stream: read it as a pipe
            return False

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self._file.read(size)
        except Exception as exc:  # noqa: BLE001 - raised by decode() after FFmpeg returns
            self.error = exc
            return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._file.seek(offset, whence)
        except Exception:  # noqa: BLE001 - to FFmpeg: this stream does not seek
            return -1

    def tell(self) -> int:
        try:
            return self._file.tell()
        except Exception:  # noqa: BLE001
            return -1


def _said(logs: list) -> str:
    """FFmpeg's last message while decoding (PyAV's captured logs), for the one log line."""
    return f" (FFmpeg: {logs[-1][2].strip()}; {len(logs)} message(s))" if logs else ""


def decode(
    source: str | BinaryIO,
    *,
    name: str = "",
    size_bytes: int | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    min_bytes_per_second: float | None = DEFAULT_MIN_BYTES_PER_SECOND,
    audio_track: int | None = None,
) -> DecodedAudio:
    """Decode ``source`` (a path or a seekable binary file) to 16 kHz mono float32.

    ``size_bytes`` (the file's size) bounds the duration to what it makes plausible;
    ``max_duration_s`` bounds it in any case; ``audio_track`` picks an audio stream (0-based
    among the audio streams; default: the one flagged default, else the first).
    Raises :class:`MediaError` for anything that is not decodable audio, and what reading
    ``source`` raised (an ``OSError`` of the storage) as it was.

    Nothing reaches the console: FFmpeg's own messages (which PyAV routes to the ``libav``
    loggers once anything in the process, torchvision for one, turns PyAV's logging on) are
    captured, and a file with damage, or one that fails, gets one INFO line naming it.
    """
    label = name or (source if isinstance(source, str) else "<stream>")
    reader = None if isinstance(source, str) else _Reader(source)
    with av.logging.Capture(local=True) as ffmpeg_logs:
        try:
            decoded = _decode(
                source if reader is None else reader,
                label,
                size_bytes,
                max_duration_s,
                min_bytes_per_second,
                audio_track,
                ffmpeg_logs,
            )
        except MediaError as exc:
            if reader is not None and reader.error is not None:
                raise reader.error from None  # the storage failed, not the file
            log.info("%s: %s%s", label, exc, _said(ffmpeg_logs))
            raise
        if reader is not None and reader.error is not None:
            raise reader.error
    return decoded


def _decode(
    source: str | _Reader,
    label: str,
    size_bytes: int | None,
    max_duration_s: float | None,
    min_bytes_per_second: float | None,
    audio_track: int | None,
    ffmpeg_logs: list,
) -> DecodedAudio:
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(MediaProblem.NOT_MEDIA, f"not a readable media file ({exc.strerror or exc})") from None
    with container:
        audio_streams = list(container.streams.audio)
        track = pick_audio_track(audio_streams, audio_track)
        info = _probe(container, track)
        if not audio_streams:
            what = f"video only: {info.video_codec} {info.width}x{info.height}" if info.video_codec else "no streams"
            raise MediaError(MediaProblem.NO_AUDIO, f"no audio stream ({what})", skip=True)
        ceiling, too_long, why = _ceiling(size_bytes, max_duration_s, min_bytes_per_second)
        if info.duration_s and info.duration_s > ceiling:  # refused before decoding anything
            raise MediaError(
                too_long,
                f"{too_long.value.replace('_', ' ')}: the container declares {info.duration_s / 3600:.2f} h, over {why}",
            )
        stream = audio_streams[track]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        max_samples = int(ceiling * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        total = 0
        good = damaged = 0
        gap_s = 0.0  # duration of damaged packets not yet followed by good audio
        demux_error: str | None = None
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # ffmpeg ends the input here too
                demux_error = exc.strerror or str(exc)
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if packet.size:
                    damaged += 1
                    if packet.duration and packet.time_base:
                        gap_s += float(packet.duration * packet.time_base)
                continue
            if packet.size:
                good += 1
            for frame in frames:
                if gap_s:  # damage with good audio after it: silence in its place
                    fill = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
                    chunks.append(fill)
                    total += len(fill)
                    gap_s = 0.0
                frame.pts = None  # let the resampler count samples; broken pts must not drop audio
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += len(chunks[-1])
            if total > max_samples:
                raise MediaError(
                    too_long,
                    f"{too_long.value.replace('_', ' ')}: decoding stopped at {total / SAMPLE_RATE / 3600:.2f} h, over {why}",
                )
        try:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            demux_error = demux_error or exc.strerror or str(exc)
    warnings = damaged + (demux_error is not None)
    decoded_s = sum(len(c) for c in chunks) / SAMPLE_RATE
    if damaged and (good == 0 or damaged > MAX_DAMAGED_SHARE * (good + damaged)):
        raise MediaError(
            MediaProblem.DECODE_ERROR,
            f"decoding failed: {damaged} of {good + damaged} audio packets are damaged ({decoded_s:.1f} s usable)",
        )
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    decoded = DecodedAudio(
        info=info, samples=samples, decode_warnings=warnings, audio_tracks=len(audio_streams), audio_track=track
    )
    if decoded.duration_s == 0:
        raise MediaError(MediaProblem.NO_AUDIO_DATA, "the audio stream decoded to no samples")
    declared = info.duration_s
    if declared and decoded.duration_s < declared * MIN_COVERAGE - COVERAGE_SLACK_S:
        if demux_error is not None:  # the stream broke off: say so rather than "truncated"
            raise MediaError(
                MediaProblem.DECODE_ERROR, f"decoding failed after {decoded.duration_s:.1f} s: {demux_error}"
            )
        raise MediaError(
            MediaProblem.TRUNCATED,
            f"truncated: decoded {decoded.duration_s:.1f} s of the {declared:.1f} s the container declares",
        )
    if warnings:
        log.info(
            "decoded %s with %d warning(s): %d damaged packet(s), demuxer: %s%s",
            label,
            warnings,
            damaged,
            demux_error,
            _said(ffmpeg_logs),
        )
    else:
        log.debug("decoded %s: %.1f s of %s%s", label, decoded.duration_s, info.audio_codec, _said(ffmpeg_logs))
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

"""Speech activity shared by diarization and transcription: one segmentation pass per file.

WhisperX's VAD (``vad_method="pyannote"``) and the packaged diarization pipeline run the same
pyannote segmentation checkpoint (the one bundled with whisperx) over the same sliding
windows (5 s, 0.5 s step). The VAD keeps the per-frame maximum over the local speakers,
averaged over overlapping windows (pyannote's ``Inference.aggregate`` with a Hamming window);
diarization keeps the raw per-window scores. So the VAD's output can be computed from what
diarization already computed, exactly, instead of running the model a second time (a quarter
of the transcription time on CPU).

The diarization step writes a file's :class:`SpeechActivity` next to its 16 kHz audio
(``audio_16k/<xx>/<media_id>.speech-<fingerprint>-<audio digest>.npz``); the transcription step uses it in
place of WhisperX's VAD when it is there with the same fingerprint and covers the same
number of samples, and runs the VAD itself otherwise (diarization failed, was skipped, runs
a production pipeline with another segmentation model, or ran with other settings).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored layout or the aggregation changes
# WhisperX's VAD thresholds (``load_model``'s defaults): speech starts where the score rises
# above the onset and ends where it falls below the offset
VAD_ONSET = 0.500
VAD_OFFSET = 0.363


def bundled_checkpoint() -> str:
    """The pyannote segmentation checkpoint inside the whisperx wheel: WhisperX's VAD model
    and the packaged diarization's segmentation model."""
    import whisperx

    return str(Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin")


@functools.cache
def checkpoint_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def fingerprint(checkpoint: str, duration: float, step: float) -> str:
    """What the scores depend on: the checkpoint's content, the window and the step."""
    key = f"{FORMAT}|{checkpoint_digest(checkpoint)}|{duration:.4f}|{step:.4f}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SpeechActivity:
    """Per-frame speech probability of one file, as WhisperX's pyannote VAD gives it.

    ``scores``: ``(num_frames, 1)`` float32; frame ``i`` covers
    ``[start + i * step, start + i * step + duration]`` (the model's receptive field);
    ``num_samples``: the length of the audio it was computed on."""

    scores: np.ndarray
    start: float
    duration: float
    step: float
    num_samples: int
    fingerprint: str

    @classmethod
    def from_segmentations(
        cls, segmentations, inference, num_samples: int, sample_rate: int, checkpoint: str
    ) -> SpeechActivity:
        """From the raw per-window scores of ``inference`` (a pyannote ``Inference`` with
        ``skip_aggregation``), what the same ``Inference`` with WhisperX's VAD hook (max over
        speakers, then aggregation) returns: the same code, on the same numbers."""
        from pyannote.audio import Inference
        from pyannote.core import Segment, SlidingWindowFeature

        window_size = inference.model.audio.get_num_samples(inference.duration)
        step_size = round(inference.step * sample_rate)
        has_last_chunk = num_samples < window_size or (num_samples - window_size) % step_size > 0
        speech = SlidingWindowFeature(np.max(segmentations.data, axis=-1, keepdims=True), segmentations.sliding_window)
        aggregated = Inference.aggregate(
            speech, inference.model.receptive_field, warm_up=inference.warm_up, hamming=True, missing=0.0
        )
        if has_last_chunk:
            aggregated.data = aggregated.crop(Segment(0.0, num_samples / sample_rate), mode="loose")
        frames = aggregated.sliding_window
        return cls(
            scores=np.asarray(aggregated.data, dtype=np.float32),
            start=float(frames.start),
            duration=float(frames.duration),
            step=float(frames.step),
            num_samples=int(num_samples),
            fingerprint=fingerprint(checkpoint, inference.duration, inference.step),
        )

    def islands(self, onset: float = VAD_ONSET, offset: float = VAD_OFFSET) -> list[tuple[float, float]]:
        """The speech regions WhisperX's VAD cuts from these scores (:func:`speech_islands`)."""
        return speech_islands(
            self.scores[:, 0],
            self.start,
            self.step,
            self.duration,
            onset=onset,
            offset=offset,
            total_s=self.num_samples / 16_000,
        )

    def speech_at(self, times: np.ndarray, onset: float = VAD_ONSET) -> np.ndarray:
        """Whether the frame centred nearest each of ``times`` (s) scores over ``onset``:
        speech frame by frame, without the hysteresis and padding of ``islands``."""
        if not len(self.scores):
            return np.zeros(len(times), bool)
        i = np.round((np.asarray(times, np.float64) - self.start - self.duration / 2) / self.step).astype(np.int64)
        return self.scores[np.clip(i, 0, len(self.scores) - 1), 0] > onset

    def sliding_window_feature(self):
        """The VAD output WhisperX's ``merge_chunks`` takes."""
        from pyannote.core import SlidingWindow, SlidingWindowFeature

        return SlidingWindowFeature(
            self.scores, SlidingWindow(start=self.start, duration=self.duration, step=self.step)
        )

    # -- storage ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        header = np.array([self.start, self.duration, self.step, float(self.num_samples)], dtype=np.float64)
        np.savez(buf, header=header, scores=self.scores, fingerprint=np.array(self.fingerprint))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SpeechActivity:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            start, duration, step, num_samples = (float(x) for x in z["header"])
            return cls(z["scores"], start, duration, step, int(num_samples), str(z["fingerprint"]))


def speech_islands(
    scores,
    start: float,
    step: float,
    duration: float,
    *,
    onset: float = VAD_ONSET,
    offset: float = VAD_OFFSET,
    min_duration_on: float = 0.0,
    min_duration_off: float = 0.0,
    total_s: float | None = None,
) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` from per-frame speech scores, by the rule of
    WhisperX's VAD (pyannote's ``Binarize`` as ``merge_chunks`` applies it, before chunks are
    merged): frame ``i`` is timed at the middle of its window, ``start + i * step +
    duration / 2``; a region opens at the first frame scoring above ``onset`` and closes at the
    first frame after it scoring below ``offset`` (hysteresis), or at the last frame. Then gaps
    shorter than ``min_duration_off`` are filled, regions are clipped to ``[0, total_s]``, and
    those shorter than ``min_duration_on`` (or empty) are dropped (both minimums are 0 in
    WhisperX).

    The result is sorted, regions do not overlap or touch, and none is empty. NaN scores
    count as silence."""
    y = np.nan_to_num(np.asarray(scores, dtype=np.float64).reshape(-1), nan=0.0)
    regions: list[list[float]] = []
    if y.size:
        t = start + np.arange(y.size) * step + duration / 2
        above = np.flatnonzero(y > onset)
        below = y < offset
        i = 0
        while True:
            k = np.searchsorted(above, i)
            if k == above.size:
                break
            opened = int(above[k])
            ends = np.flatnonzero(below[opened + 1 :])
            closed = opened + 1 + int(ends[0]) if ends.size else y.size - 1
            regions.append([float(t[opened]), float(t[closed])])
            if not ends.size:
                break
            i = closed + 1
    merged: list[list[float]] = []
    for r in regions:
        if merged and r[0] - merged[-1][1] < min_duration_off:
            merged[-1][1] = max(merged[-1][1], r[1])
        else:
            merged.append(r)
    out = []
    hi = float("inf") if total_s is None else float(total_s)
    for a, b in merged:
        a, b = max(a, 0.0), min(b, hi)
        if b > a and b - a >= min_duration_on:
            out.append((a, b))
    return out


def activity_path(audio_path: str, fp: str, audio: bytes) -> str:
    """Where a file's activity is stored: beside its 16 kHz audio, named by the model's
    fingerprint and the audio's own digest (a re-ingest that changed the samples under the
    same media id never meets an old activity)."""
    digest = hashlib.blake2b(audio, digest_size=8).hexdigest()
    return audio_path.removesuffix(".flac") + f".speech-{fp}-{digest}.npz"

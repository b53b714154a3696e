"""Clustering thresholds per embedding model, and how sure a membership is.

Cosine similarities mean something different for every embedding model, so every threshold
the clustering (:mod:`.cluster`) and the edits (:mod:`.edits`) apply comes from one
:class:`ClusterParams`, calibrated per model on real speech (:data:`CALIBRATED`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterParams:
    """Thresholds on cosine similarity, which mean something different for every embedding
    model: :meth:`for_model` gives each packaged encoder its calibrated values (measured on
    real speech: ``benchmarks/speakers_quality.py --real``, README "Speakers on real
    voices"); the dataclass defaults are resemblyzer's GE2E. With GE2E different real people
    reach about 0.83 with 6-12 s of clean speech each, but 0.87-0.90 with 2-5 s and 0.95
    under 1 s, while one person in two files is at 0.80-0.93 with 8 s; so a speaker with
    little speech needs a higher similarity to join a voice, and one with under
    ``min_speech_s`` never joins. ``accept_threshold`` / ``suggest_threshold``: similarity
    to a named voice for a 'high' / 'medium' name suggestion."""

    threshold: float = 0.88  # cosine similarity needed to join a voice, with >= full_speech_s of speech
    merge_threshold: float = 0.92  # two centroids this similar are one voice
    short_threshold: float = 0.95  # ... needed with short_speech_s of speech or less
    full_speech_s: float = 8.0
    short_speech_s: float = 2.0
    min_speech_s: float = 1.0  # a speaker with less never joins a voice (nor is joined): its own id
    iterations: int = 3
    chunk_rows: int = 4096
    seed_rows: int = 2048
    max_weight_s: float = 60.0  # a speaker's weight: seconds of speech, capped
    accept_threshold: float = 0.80
    suggest_threshold: float = 0.70

    @classmethod
    def for_model(cls, model: str | None) -> ClusterParams:
        """The calibrated thresholds of ``model`` (a ``speaker_embeddings.model`` value);
        GE2E's for any model without its own calibration (``speakers calibrate`` measures
        an archive's own named voices against them)."""
        for prefix, values in CALIBRATED.items():
            if model and model.startswith(prefix):
                return cls(**values)
        return cls()

    def required(self, speech_s: np.ndarray) -> np.ndarray:
        """The similarity each speaker needs to join a voice: ``short_threshold`` up to
        ``short_speech_s`` of speech, ``threshold`` from ``full_speech_s``, linear between."""
        s = np.asarray(speech_s, dtype=np.float64)
        span = max(self.full_speech_s - self.short_speech_s, 1e-9)
        t = np.clip((s - self.short_speech_s) / span, 0.0, 1.0)
        need = np.maximum(self.threshold, self.short_threshold + (self.threshold - self.short_threshold) * t)
        return np.where(s < self.min_speech_s, np.inf, need)


# per embedding model (by prefix of its name): see ClusterParams.for_model
CALIBRATED: dict[str, dict] = {
    # 3D-Speaker's CAM++ (speech/encoders/campplus.py), on the real speech of benchmarks/speakers_quality.py
    # --real: different people at most 0.52 with 2 s of clean speech each, 0.47 with 4 s, 0.36
    # with 6-10 s (median 0.06); one person in two files at least 0.60 with 6-10 s (median 0.71)
    "campplus-": {
        "threshold": 0.55,
        "short_threshold": 0.70,
        "merge_threshold": 0.65,
        "accept_threshold": 0.45,
        "suggest_threshold": 0.35,
    },
}


def membership_confidence(
    similarity: np.ndarray, runner_up: np.ndarray, speech_s: np.ndarray, params: ClusterParams
) -> np.ndarray:
    """How sure a membership is, 0..1: the margin of the speaker's similarity over what it
    needs to join (its share of ``1 - required``) times its margin over the next most
    similar voice (full at 0.10), times the share of ``full_speech_s`` it has (short speech
    is where different real people look alike). 1.0 only for a clear member with enough
    speech; rows founded a new voice alone get their speech share."""
    req = params.required(speech_s)
    above = np.clip((np.asarray(similarity) - req) / np.maximum(1.0 - req, 1e-9), 0.0, 1.0)
    above = np.where(np.asarray(similarity) >= 0.999, 1.0, above)  # alone in its voice
    margin = np.clip((np.asarray(similarity) - np.asarray(runner_up)) / 0.10, 0.0, 1.0)
    speech = np.clip(np.asarray(speech_s, dtype=np.float64) / params.full_speech_s, 0.0, 1.0)
    return np.round(np.sqrt(above * margin) * speech, 4)

"""What every speaker encoder offers (no Dagster, no pyannote pipeline in here).

A speaker encoder turns speech into one unit vector per input, tagged with the model that made
it (``name``), so that vectors from different models are never compared. It serves twice:

- a speaker's *voice* for the archive-wide identity: ``embed_many(wavs)``, one vector per
  waveform (all of one speaker's clean speech in a file);
- pyannote's per-(window, local speaker) embeddings inside diarization: ``__call__(waveforms
  (B, 1, N), masks (B, F))``, pyannote's embedding interface; an encoder may add
  ``window_embeddings`` (CAM++ does) to compute all of a file's at once.

Shapes: waveforms are float32 mono at 16 kHz.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class EncoderNotAvailable(RuntimeError):
    """An encoder's package or weights are not installed."""


@runtime_checkable
class SpeakerEncoder(Protocol):
    """pyannote's embedding interface (``sample_rate``, ``dimension``, ``metric``,
    ``min_num_samples``, ``__call__``, ``to``) plus ``name`` and ``embed_many``. Inputs with
    less than ``min_num_samples`` of speech get NaN rows, as pyannote's own embeddings do."""

    sample_rate: int
    dimension: int
    metric: str
    min_num_samples: int
    name: str

    def embed_many(self, wavs: list[np.ndarray], rate: float | None = None) -> np.ndarray:
        """One unit vector per waveform, ``(len(wavs), dimension)``."""
        ...

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        """pyannote's interface: each item's masked samples embedded on their own."""
        ...

    def to(self, device): ...

    @classmethod
    def version_params(cls) -> dict:
        """The settings that change its vectors, for the diarization version."""
        ...


def masked_signals(waveforms, masks=None) -> list[np.ndarray]:
    """pyannote's embedding input as one waveform per item: ``waveforms (B, 1, N)``, each
    cut to the samples its frame mask ``masks (B, F)`` keeps (all of them without masks)."""
    import torch.nn.functional as F

    batch, channels, num_samples = waveforms.shape
    assert channels == 1
    signals = waveforms[:, 0].cpu().numpy()
    if masks is None:
        return list(signals)
    keep = F.interpolate(masks[:, None].float(), size=num_samples, mode="nearest")[:, 0] > 0.5
    keep = keep.cpu().numpy()
    return [s[k] for s, k in zip(signals, keep)]

"""resemblyzer's GE2E speaker encoder (256-d), the packaged diarizer's encoder before CAM++.

It cannot tell real voices apart on a few seconds each (README "Speakers on real voices"):
on the same pieces of real speech, different people sit at a median cosine of 0.57-0.73 with
GE2E against about 0.06 with CAM++. Kept as ``packaged-ge2e`` for archives diarized with it.

Shapes: waveforms are float32 mono at 16 kHz, ``(num_samples,)``.
"""

from __future__ import annotations

import math

import numpy as np

from ..decode import SAMPLE_RATE
from .base import masked_signals

RESEMBLYZER_MODEL = "resemblyzer-ge2e-256@0.1.4"


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """resemblyzer's loudness normalisation (without its silence trimming, which would shift
    every timestamp)."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if wav.size else 0.0
    if rms < 1e-6:
        return wav
    gain = 10 ** ((target_dbfs - 20 * math.log10(rms)) / 20)
    return (wav * gain).astype(np.float32)


class ResemblyzerEmbedding:
    """resemblyzer's GE2E encoder behind pyannote's embedding interface.

    ``__call__(waveforms (B, 1, N), masks (B, F)) -> (B, 256)``: the masked samples of each
    item are cut into 1.6 s partials, all partials of the batch go through the LSTM in one
    forward pass, and each item's partials are averaged and normalised. Items with less than
    ``min_num_samples`` of masked speech get NaN, as pyannote's own embeddings do.
    """

    sample_rate = SAMPLE_RATE
    dimension = 256
    metric = "cosine"
    min_num_samples = int(0.4 * SAMPLE_RATE)
    name = RESEMBLYZER_MODEL
    max_partials = 256  # 1.6 s partials per LSTM forward pass (about 0.25 GB of activations)
    piece_s = 300.0  # longer waveforms are cut into partials this much at a time
    # partials per second: a speaker's voice (what archive-wide clustering compares, and its
    # thresholds are calibrated on) takes resemblyzer's 2.0; pyannote's per-window embeddings
    # (5 s windows every 0.5 s, so every second of speech is embedded ten times over) take 1.0,
    # half the LSTM work of diarization (benchmarks/speakers_quality.py: DER before/after)
    voice_rate = 2.0
    window_rate = 1.0

    def __init__(self, device: str = "cpu"):
        import torch
        from resemblyzer import VoiceEncoder

        self._torch = torch
        self.device = torch.device(device)
        self.encoder = VoiceEncoder(device=self.device, verbose=False)
        self.encoder.eval()

    def to(self, device):
        self.device = device
        self.encoder.to(device)
        return self

    @classmethod
    def version_params(cls) -> dict:
        """What changes its diarization embeddings (the diarization version hashes it)."""
        return {"voice_rate": cls.voice_rate, "window_rate": cls.window_rate}

    def _partials(self, wav: np.ndarray, rate: float = 2.0) -> np.ndarray:
        from resemblyzer import audio

        wav = normalize_volume(wav)
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(wav), rate=rate, min_coverage=0.5)
        if wav_slices[-1].stop > len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = audio.wav_to_mel_spectrogram(wav)
        return np.stack([mel[s] for s in mel_slices])  # (partials, 160, 40)

    def _partials_in_pieces(self, wav: np.ndarray, rate: float):
        """The partials of ``wav``, a piece of at most ``piece_s`` at a time (the mel
        spectrogram and partials of a 2-hour speaker would be held whole otherwise); a
        waveform shorter than that is one piece, so its partials are exactly resemblyzer's."""
        n = int(self.piece_s * self.sample_rate)
        if len(wav) <= n:
            yield self._partials(wav, rate)
            return
        for start in range(0, len(wav), n):
            piece = wav[start : start + n]
            if len(piece) >= self.min_num_samples:
                yield self._partials(piece, rate)

    def embed_many(self, wavs: list[np.ndarray], rate: float | None = None) -> np.ndarray:
        """One unit vector per waveform, ``(len(wavs), 256)``; NaN rows for too-short input.
        ``rate``: partials per second (default ``voice_rate``, resemblyzer's own 2.0).

        The partials of all waveforms go through the LSTM ``max_partials`` at a time and each
        waveform's are summed as they come, so memory stays flat however long the input (a
        speaker's hour of speech is 7,200 partials: in one forward pass, gigabytes of LSTM
        activations); the mean of the sums is the same as the mean of one pass."""
        out = np.full((len(wavs), self.dimension), np.nan, dtype=np.float32)
        sums = np.zeros((len(wavs), self.dimension), dtype=np.float64)
        pending: list[np.ndarray] = []  # partials waiting for a forward pass
        owners: list[np.ndarray] = []
        n_pending = 0

        def flush():
            nonlocal n_pending
            if not pending:
                return
            with self._torch.inference_mode():
                batch = self._torch.from_numpy(np.concatenate(pending)).to(self.device)
                partial = self.encoder(batch).cpu().numpy().astype(np.float64)
            np.add.at(sums, np.concatenate(owners), partial)
            pending.clear()
            owners.clear()
            n_pending = 0

        for i, wav in enumerate(wavs):
            if len(wav) < self.min_num_samples:
                continue
            for p in self._partials_in_pieces(np.asarray(wav, dtype=np.float32), rate or self.voice_rate):
                for start in range(0, len(p), self.max_partials):
                    piece = p[start : start + self.max_partials]
                    pending.append(piece)
                    owners.append(np.full(len(piece), i))
                    n_pending += len(piece)
                    if n_pending >= self.max_partials:
                        flush()
        flush()
        for i in range(len(wavs)):
            norm = float(np.linalg.norm(sums[i]))
            if norm > 0:
                out[i] = (sums[i] / norm).astype(np.float32)
        return out

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        return self.embed_many(masked_signals(waveforms, masks), self.window_rate)

"""The file-level signal measures of the quality step: loudness, true peak, clipping and
bandwidth. Dagster-free.

**Loudness** is ITU-R BS.1770-4 / EBU R128 integrated loudness (pyloudnorm) and **true
peak** the largest absolute sample after 4x oversampling (polyphase, BS.1770 annex 2), both
of the 16 kHz mono the pipeline keeps. **Bandwidth** is measured on that same audio, so it
can say at most 8 kHz: enough to tell a telephone-band file (content ends near 3.4-4 kHz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
CLIP_LEVEL = 0.99  # |sample| at or above this (-0.09 dBFS) counts as clipped
TELEPHONE_BAND_HZ = 5_000.0  # effective bandwidth at or under this: narrowband (telephone: 300-3400 Hz)
BANDWIDTH_DROP_DB = 50.0  # the spectrum's edge: where the long-term level falls this far under its peak


def integrated_loudness(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """ITU-R BS.1770-4 / EBU R128 integrated loudness (LUFS, pyloudnorm) of mono audio; None
    for silence or under one 400 ms block."""
    import pyloudnorm

    x = np.asarray(samples, dtype=np.float64)
    if len(x) < int(0.4 * sample_rate):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        value = pyloudnorm.Meter(sample_rate).integrated_loudness(x)
    return float(value) if np.isfinite(value) else None


_TRUE_PEAK_PAD = 64  # input samples either side of a block: wider than the filter (~10 a side)


def _oversampling_gain(up: int = 4) -> float:
    """The largest sum of absolute taps over the phases of ``resample_poly``'s own filter:
    an oversampled value is at most this times the largest input sample near it."""
    from scipy.signal import firwin

    half = 10 * up  # resample_poly's default (its window is ('kaiser', 5.0))
    taps = firwin(2 * half + 1, 1.0 / up, window=("kaiser", 5.0)) * up
    return float(max(np.abs(taps[p::up]).sum() for p in range(up)))


def true_peak_dbtp(samples: np.ndarray, chunk_s: float = 1.0, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Largest absolute value after 4x polyphase oversampling, in dBTP (None for digital
    silence). Block by block (``chunk_s``) with an overlap wider than the filter, loudest block
    first; a block whose largest nearby sample times the filter's gain cannot beat the peak
    found so far is not oversampled (exact: the same value as oversampling everything)."""
    from scipy.signal import resample_poly

    x = np.asarray(samples, dtype=np.float32)
    n = len(x)
    if not n:
        return None
    step, pad = int(chunk_s * sample_rate), _TRUE_PEAK_PAD
    blocks = -(-n // step)
    level = np.zeros(blocks * step, dtype=np.float32)
    level[:n] = np.abs(x)
    level = level.reshape(blocks, step).max(axis=1)
    near = level.copy()  # a block's output also depends on its neighbours' edge samples
    near[1:] = np.maximum(near[1:], level[:-1])
    near[:-1] = np.maximum(near[:-1], level[1:])
    gain, peak = _oversampling_gain(), 0.0
    for b in np.argsort(-near, kind="stable"):
        if near[b] * gain <= peak:
            break  # every block left is quieter still
        start = int(b) * step
        lo, hi = max(0, start - pad), min(n, start + step + pad)
        up = resample_poly(x[lo:hi], 4, 1)
        keep = up[(start - lo) * 4 : (min(start + step, n) - lo) * 4]
        if len(keep):
            peak = max(peak, float(np.max(np.abs(keep))))
    return 20.0 * math.log10(peak) if peak > 0 else None


def clipped_share(samples: np.ndarray, level: float = CLIP_LEVEL) -> float | None:
    """Share of samples at or above ``level`` of full scale (None for no samples)."""
    x = np.asarray(samples)
    if not len(x):
        return None
    return float(np.count_nonzero(np.abs(x) >= level) / len(x))


def long_term_spectrum(samples: np.ndarray, nfft: int = 512, chunk_s: float = 60.0, sample_rate: int = SAMPLE_RATE):
    """(frequencies, mean power) of Hann-windowed frames at half overlap, chunk by chunk."""
    x = np.asarray(samples, dtype=np.float32)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    window = np.hanning(nfft).astype(np.float32)
    hop, total, frames = nfft // 2, np.zeros(len(freqs)), 0
    step = int(chunk_s * sample_rate) // hop * hop
    for start in range(0, max(len(x) - nfft + 1, 0), step):
        part = x[start : start + step + nfft - hop]
        if len(part) < nfft:
            break
        idx = np.arange(0, len(part) - nfft + 1, hop)[:, None] + np.arange(nfft)
        spec = np.abs(np.fft.rfft(part[idx] * window, axis=1)) ** 2
        total += spec.sum(axis=0)
        frames += len(spec)
    return freqs, (total / frames if frames else total)


def effective_bandwidth_hz(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """The highest frequency whose long-term level is within ``BANDWIDTH_DROP_DB`` of the
    spectrum's peak (above 100 Hz); None for silence. At most ``sample_rate / 2``."""
    freqs, power = long_term_spectrum(samples, sample_rate=sample_rate)
    band = freqs >= 100.0
    if not np.any(power[band] > 0):
        return None
    level = 10.0 * np.log10(np.maximum(power, 1e-30))
    peak = level[band].max()
    above = np.nonzero(band & (level >= peak - BANDWIDTH_DROP_DB))[0]
    return float(freqs[above[-1]]) if len(above) else None


@dataclass(frozen=True)
class AudioMeasures:
    loudness_lufs: float | None
    true_peak_dbtp: float | None
    clipped_share: float | None
    bandwidth_hz: float | None
    telephone_band: bool | None


def measure_audio(samples: np.ndarray, source_rate: int | None = None, sample_rate: int = SAMPLE_RATE) -> AudioMeasures:
    """The file-level signal measures. ``source_rate``: the source's own sample rate (its
    Nyquist frequency bounds the bandwidth, e.g. 4 kHz for an 8 kHz telephone recording)."""
    bandwidth = effective_bandwidth_hz(samples, sample_rate)
    if bandwidth is not None and source_rate:
        bandwidth = min(bandwidth, source_rate / 2)
    return AudioMeasures(
        loudness_lufs=integrated_loudness(samples, sample_rate),
        true_peak_dbtp=true_peak_dbtp(samples, sample_rate=sample_rate),
        clipped_share=clipped_share(samples),
        bandwidth_hz=bandwidth,
        telephone_band=None if bandwidth is None else bool(bandwidth <= TELEPHONE_BAND_HZ),
    )

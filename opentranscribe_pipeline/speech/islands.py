"""Issue 30: a window's local speaker split at its pauses (on by default).

The segmentation model can keep one local label for two people across a pause, and pooling
their frames makes one mixed voice. With ``OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES`` on, the
packaged pipeline (``speech/packaged.py``) splits each window's local speaker at every pause of
theirs: each *island* of speech is its own (window, speaker) for embedding, clustering and
reconstruction. ``min_gap_s``: the shortest pause that splits; ``min_island_s``: shorter islands
join the nearer neighbour (too little speech to embed). Pauses are where the segmentation's own
activity stops, and where the signal is near silent (``quiet_frames``: the model can see speech
go on through half a second of silence). A local speaker whose islands agree is still embedded
whole (``CamPlusEmbedding.window_embeddings`` with ``owner``): only where two of its islands of
at least ``agree_min_s`` are at a cosine under ``agree`` (two people, not one person's pauses)
do the islands keep their own embeddings; the split costs no extra pass of the network.
Figures: benchmarks/RESULTS.md, "Issue 30".

Shapes: ``samples`` float32 mono at 16 kHz; segmentations ``(chunks, frames, local_speakers)``.
"""

from __future__ import annotations

import numpy as np

from .decode import SAMPLE_RATE

# ``agree``: a local speaker stays whole (its islands pooled as one) unless two of its islands
# of at least ``agree_min_s`` each are at a cosine under ``agree`` (``CamPlusEmbedding``)
ISLANDS = {
    "min_gap_s": 0.15,
    "min_island_s": 0.5,
    "quiet_db": 35.0,
    "quiet_max_dbfs": -40.0,
    "agree": 0.3,
    "agree_min_s": 1.0,
}
QUIET_HOP_S = 0.01


def split_enabled() -> bool:
    """On by default (``OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES=0`` turns it off): on
    benchmarks/speakers_quality.py --constructions it tells real people alternating with pauses
    apart (DER 0.451 -> 0.096 on one), with the clustering threshold 0.50 and the joins of
    speakers with one voice (``turns.join_speakers``) the sample archive keeps every speaker
    (benchmarks/RESULTS.md, issue 30)."""
    from .. import settings

    return settings.diarization_split_at_pauses()


def frame_power(samples: np.ndarray) -> np.ndarray:
    """Mean square of ``samples`` in 20 ms windows, one every ``QUIET_HOP_S`` (10 ms); empty
    under two hops."""
    hop = int(QUIET_HOP_S * SAMPLE_RATE)
    n = len(samples) // hop
    if n < 2:
        return np.zeros(0, np.float64)
    power = (np.asarray(samples[: n * hop], np.float64).reshape(n, hop) ** 2).mean(axis=1)
    return (power + np.r_[power[1:], power[-1]]) / 2  # 20 ms windows, 10 ms apart


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of ``True`` in ``mask``."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def quiet_frames(samples: np.ndarray, min_gap_s: float) -> np.ndarray:
    """One flag per ``QUIET_HOP_S`` of ``samples``: inside a pause of at least ``min_gap_s``
    where the signal is near silent (20 ms RMS under ``ISLANDS["quiet_db"]`` below the file's
    loud speech, its 95th percentile, and under ``ISLANDS["quiet_max_dbfs"]``): silence or a
    low noise bed between turns, never a quiet voice."""
    power = frame_power(samples)
    out = np.zeros(len(samples) // int(QUIET_HOP_S * SAMPLE_RATE), bool)
    if not len(power):
        return out
    db = 10 * np.log10(power + 1e-12)
    threshold = min(np.percentile(db, 95) - ISLANDS["quiet_db"], ISLANDS["quiet_max_dbfs"])
    for a, b in runs(db < threshold):
        if (b - a) * QUIET_HOP_S >= min_gap_s:
            out[a:b] = True
    return out


def dead_silence(samples: np.ndarray, dbfs: float, min_s: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every stretch of at least ``min_s`` where the signal's 20 ms RMS
    (10 ms apart) stays under ``dbfs``: digital silence, not a quiet room (the packaged
    diarizer's ``DEAD_SILENCE``, speech/packaged.py)."""
    dead = frame_power(samples) < 10 ** (dbfs / 10)
    return [(float(a) / 100, float(b) / 100) for a, b in runs(dead) if (b - a) / 100 >= min_s]


def split_at_pauses(
    data: np.ndarray,
    threshold: float,
    frame_s: float,
    min_gap_s: float,
    min_island_s: float,
    pauses: np.ndarray | None = None,
) -> np.ndarray:
    """``split_islands``' scores alone."""
    return split_islands(data, threshold, frame_s, min_gap_s, min_island_s, pauses)[0]


def split_islands(
    data: np.ndarray,
    threshold: float,
    frame_s: float,
    min_gap_s: float,
    min_island_s: float,
    pauses: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``data`` ``(chunks, frames, local_speakers)`` of segmentation scores as
    ``(chunks, frames, K)``: each column one island of one local speaker (their active frames,
    score > ``threshold``, between pauses of at least ``min_gap_s``), with the scores of the
    frames nearest to it (a pause is shared at its middle), zero elsewhere; the columns of a
    window sum to its local speakers' scores. ``K``: the most islands any window has.
    ``pauses`` ``(chunks, frames)``: frames in a pause of the signal (``quiet_frames``), never
    inside an island whatever the scores say there."""
    num_chunks, num_frames, num_local = data.shape
    min_gap = max(1, int(round(min_gap_s / frame_s)))
    min_island = max(1, int(round(min_island_s / frame_s)))
    active = np.nan_to_num(data, nan=0.0) > threshold
    if pauses is not None:
        active &= ~pauses[:, :, None]
    pieces: list[list[tuple[int, int, int]]] = []  # per chunk: (local speaker, first frame, end frame)
    for c in range(num_chunks):
        mine = []
        for s in range(num_local):
            idx = np.flatnonzero(active[c, :, s])
            if idx.size == 0:
                mine.append((s, 0, num_frames))
                continue
            breaks = np.flatnonzero(np.diff(idx) > min_gap)  # island i ends at idx[breaks[i]]
            runs = [[int(a), int(b) + 1] for a, b in zip(np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]])]
            # islands too short to embed join the neighbour across the shorter pause
            while len(runs) > 1:
                lengths = [b - a for a, b in runs]
                i = int(np.argmin(lengths))
                if lengths[i] >= min_island:
                    break
                gap_before = runs[i][0] - runs[i - 1][1] if i > 0 else None
                gap_after = runs[i + 1][0] - runs[i][1] if i + 1 < len(runs) else None
                j = i - 1 if gap_after is None or (gap_before is not None and gap_before <= gap_after) else i + 1
                lo, hi = min(i, j), max(i, j)
                runs[lo : hi + 1] = [[runs[lo][0], runs[hi][1]]]
            # each island takes the frames up to the middle of the pauses around it
            edges = [0, *[(runs[k][1] + runs[k + 1][0]) // 2 for k in range(len(runs) - 1)], num_frames]
            mine.extend((s, edges[k], edges[k + 1]) for k in range(len(runs)))
        pieces.append(mine)
    width = max(len(p) for p in pieces) if pieces else num_local
    out = np.zeros((num_chunks, num_frames, max(width, num_local)), dtype=data.dtype)
    owner = np.full((num_chunks, out.shape[2]), -1, np.int64)  # the local speaker of each column
    for c, mine in enumerate(pieces):
        for k, (s, a, b) in enumerate(mine):
            out[c, a:b, k] = data[c, a:b, s]
            owner[c, k] = s
    return out, owner


def split_segmentations(segmentations, samples: np.ndarray, threshold: float):
    """pyannote's raw segmentations (a ``SlidingWindowFeature``) with each local speaker split
    into its islands (``split_islands``), the signal's pauses (``quiet_frames``) included, and
    the local speaker each column comes from ``(chunks, K)``."""
    from pyannote.core import SlidingWindowFeature

    window = segmentations.sliding_window
    num_chunks, num_frames, _ = segmentations.data.shape
    frame_s = window.duration / num_frames
    # the signal's own pauses, where the segmentation model may see speech go on
    quiet = quiet_frames(samples, ISLANDS["min_gap_s"])
    t = window.start + window.step * np.arange(num_chunks)[:, None] + (np.arange(num_frames) + 0.5) * frame_s
    k = np.clip((t / QUIET_HOP_S).astype(np.int64), 0, max(len(quiet) - 1, 0))
    pauses = quiet[k] if len(quiet) else None
    data, owner = split_islands(
        segmentations.data, threshold, frame_s, ISLANDS["min_gap_s"], ISLANDS["min_island_s"], pauses
    )
    return SlidingWindowFeature(data, window), owner

"""Independent reference computations for the property tests: time counted in grid ticks
(integers), so an oracle never shares a floating-point shortcut with the code it checks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .strategies import TICK


def ticks(seconds: float) -> int:
    t = seconds / TICK
    assert t == int(t), f"{seconds} is off the 1/64 s grid"
    return int(t)


def coverage(spans: Iterable[tuple[float, float]], horizon: int) -> np.ndarray:
    """How many of ``spans`` cover each tick cell ``[k, k+1)``, for k < horizon."""
    d = np.zeros(horizon + 1, np.int64)
    for s, e in spans:
        a, b = max(0, ticks(s)), min(horizon, ticks(e))
        if b > a:
            d[a] += 1
            d[b] -= 1
    return np.cumsum(d)[:horizon]


def clip(turns: list[tuple[float, float, str]], duration_s: float) -> list[tuple[float, float, str]]:
    """Turns cut to the media, ``[0, duration_s]`` (a turn wholly past the end: zero-length at the end)."""
    if duration_s <= 0:
        return list(turns)
    return [(min(max(s, 0.0), duration_s), min(max(e, 0.0), duration_s), spk) for s, e, spk in turns]


def seconds_covered(spans: Iterable[tuple[float, float]], horizon: int) -> float:
    return float((coverage(spans, horizon) > 0).sum()) * TICK


def other_speech_in(turns, speaker: str, lo: float, hi: float) -> bool:
    """Does anyone but ``speaker`` speak (a positive length of turn) inside ``(lo, hi)``?"""
    return any(spk != speaker and min(e, hi) - max(s, lo) > 0 for s, e, spk in turns)


def pieces_inside(turns, speaker: str, lo: float, hi: float) -> list[tuple[float, float]]:
    return sorted((s, e) for s, e, spk in turns if spk == speaker and lo <= s and e <= hi)


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching spans merged (sorted input)."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]

"""Editing a file's speaker turns (no models in here): what the diarizer does to pyannote's
turns after clustering (``diarize.Diarizer``): speakers whose voices are one person's joined
(``join_speakers``, ``_joined``), digital silence cut out (``_cut``), a speaker of two voices
split (``two_voices``, ``best_runs``), turns moved to the voice they sound like
(``reassign_turns``, ``_moved``) and cut where the voice changes (``changes_within``), speech
only WhisperX's VAD heard given to the nearest speaker (``unclaimed_speech``, ``_filled``).
Turns are ``(start_s, end_s, speaker)``, times in seconds."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from .activity import SpeechActivity
from .decode import SAMPLE_RATE


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str


def _relabel(turns: list[Turn], mapping: dict[str, str]) -> list[Turn]:
    return [Turn(t.start_s, t.end_s, mapping[t.speaker]) for t in turns]


def reassign_turns(vectors: np.ndarray, speakers: list[str], voices: dict[str, np.ndarray], margin: float) -> list[str]:
    """Each turn's speaker after reassignment: ``vectors`` ``(n, d)`` the turns' own embeddings
    (NaN rows: too short to judge, they stay), ``speakers`` their speakers, ``voices`` each
    speaker's voice (unit vectors; non-finite ones are nobody's). A turn moves to the speaker
    whose voice is most alike when that cosine beats its own speaker's by more than
    ``margin``. No speaker loses every turn: a speaker all of whose turns would move keeps the
    one whose move gains least (the count of speakers is what clustering, joins and
    ``num_speakers`` made it)."""
    new = list(speakers)
    names = sorted(s for s, v in voices.items() if np.all(np.isfinite(v)))
    if len(names) < 2:
        return new
    voice = np.stack([np.asarray(voices[s], np.float64) for s in names])
    voice /= np.maximum(np.linalg.norm(voice, axis=1, keepdims=True), 1e-12)
    gain: dict[int, float] = {}
    for i, (v, s) in enumerate(zip(np.asarray(vectors, np.float64), speakers)):
        norm = float(np.linalg.norm(v)) if np.all(np.isfinite(v)) else 0.0
        if s not in names or norm == 0.0:
            continue
        cos = voice @ (v / norm)
        own = names.index(s)
        cos_other = np.where(np.arange(len(names)) == own, -np.inf, cos)
        best = int(np.argmax(cos_other))
        if cos[best] - cos[own] > margin:
            new[i], gain[i] = names[best], float(cos[best] - cos[own])
    for s in set(speakers):
        mine = [i for i, x in enumerate(speakers) if x == s]
        if all(new[i] != s for i in mine):
            new[min(mine, key=lambda i: gain[i])] = s
    return new


def unclaimed_speech(
    activity: SpeechActivity,
    num_samples: int,
    turns: list[Turn],
    gaps: list[tuple[float, float]],
    onset: float,
    min_s: float,
) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every stretch of ``min_s`` or more, on a 10 ms grid, where
    ``activity`` scores over ``onset`` and no turn of ``turns`` and no gap of ``gaps``
    (digital silence) lies."""
    n = int(num_samples // (SAMPLE_RATE // 100))
    free = activity.speech_at((np.arange(n) + 0.5) / 100, onset)
    for a, b in [*((t.start_s, t.end_s) for t in turns), *gaps]:
        free[int(np.floor(a * 100)) : int(np.ceil(b * 100))] = False
    edges = np.flatnonzero(np.diff(np.r_[0, free.astype(np.int8), 0]))
    return [(float(a) / 100, float(b) / 100) for a, b in zip(edges[::2], edges[1::2]) if (b - a) / 100 >= min_s - 1e-9]


def _filled(turns: list[Turn], stretches: list[tuple[float, float]]) -> list[Turn]:
    """``turns`` with each stretch (where none of them lies) given to the speaker whose turn
    is nearest it (the earlier on a tie), a speaker's touching turns as one."""
    if not turns or not stretches:
        return turns
    starts = np.array([t.start_s for t in turns])
    ends = np.array([t.end_s for t in turns])
    added = []
    for a, b in stretches:
        distance = np.maximum(np.maximum(starts - b, a - ends), 0.0)
        added.append(Turn(round(a, 3), round(b, 3), turns[int(np.argmin(distance))].speaker))
    return _joined(turns + added, {t.speaker: t.speaker for t in turns})


def _moved(turns: list[Turn], moves: list[tuple[float, float, str, str]]) -> list[Turn]:
    """``turns`` with each ``(start_s, end_s, from, to)`` of ``moves`` cut out of ``from``'s
    turns and given to ``to``, a speaker's overlapping or touching turns as one."""
    gaps = collections.defaultdict(list)
    for a, b, source, _ in moves:
        gaps[source].append((a, b))
    out: list[Turn] = []
    for speaker in sorted({t.speaker for t in turns}):
        out += _cut([t for t in turns if t.speaker == speaker], sorted(gaps.get(speaker, [])))
    out += [Turn(a, b, target) for a, b, _, target in moves]
    return _joined(out, {t.speaker: t.speaker for t in out})


def _joined(turns: list[Turn], joined: dict[str, str]) -> list[Turn]:
    """``turns`` relabelled by ``joined``, a speaker's overlapping or touching turns as one."""
    out: list[Turn] = []
    last: dict[str, int] = {}  # speaker -> index of their latest turn in out
    for t in sorted(_relabel(turns, joined), key=lambda t: (t.start_s, t.end_s)):
        i = last.get(t.speaker)
        if i is not None and out[i].end_s >= t.start_s:
            out[i] = Turn(out[i].start_s, max(out[i].end_s, t.end_s), t.speaker)
            continue
        last[t.speaker] = len(out)
        out.append(t)
    return sorted(out, key=lambda t: (t.start_s, t.end_s, t.speaker))


def _cut(turns: list[Turn], gaps: list[tuple[float, float]], min_s: float = 0.02) -> list[Turn]:
    """``turns`` without the stretches ``gaps`` (sorted, disjoint); pieces under ``min_s`` go."""
    if not gaps:
        return sorted(turns, key=lambda t: (t.start_s, t.end_s, t.speaker))
    starts = np.array([a for a, _ in gaps])
    out: list[Turn] = []
    for t in turns:
        lo = t.start_s
        for a, b in gaps[max(int(np.searchsorted(starts, t.start_s)) - 1, 0) :]:
            if a >= t.end_s:
                break
            if b <= lo:
                continue
            if a - lo >= min_s:
                out.append(Turn(round(lo, 3), round(a, 3), t.speaker))
            lo = max(lo, b)
        if t.end_s - lo >= min_s:
            out.append(Turn(round(lo, 3), t.end_s, t.speaker))
    return sorted(out, key=lambda t: (t.start_s, t.end_s, t.speaker))


def best_path(scores: np.ndarray, switch_cost: float) -> np.ndarray:
    """The sequence of states (one per row of ``scores`` ``(n, k)``) with the highest sum of
    its scores less ``switch_cost`` per change of state (Viterbi; on a tie the state stays,
    then the lowest index)."""
    scores = np.asarray(scores, np.float64)
    n, k = scores.shape
    if n == 0:
        return np.zeros(0, np.int64)
    total = scores[0].copy()
    back = np.zeros((n, k), np.int64)
    for i in range(1, n):
        best = int(np.argmax(total))
        switch = total[best] - switch_cost
        stay = total >= switch
        back[i] = np.where(stay, np.arange(k), best)
        total = np.where(stay, total, switch) + scores[i]
    path = np.zeros(n, np.int64)
    path[-1] = int(np.argmax(total))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def changes_within(scores: np.ndarray, own: int, switch_cost: float, min_bins: int) -> list[tuple[int, int, int]]:
    """The stretches of one turn that another speaker holds: ``scores`` ``(n, k)`` the cosine of
    the turn's bins (each with a little of its neighbours) to each speaker's voice, ``own``
    the turn's speaker. The turn's best path (``best_path``) gives ``(first, end, speaker)``
    for each run of ``min_bins`` or more of another speaker than ``own``; none when ``own``
    holds no bin (moving a whole turn is ``reassign_turns``' to decide)."""
    runs = best_runs(scores, switch_cost)
    if not any(k == own for _, _, k in runs):
        return []
    return [(a, b, k) for a, b, k in runs if k != own and b - a >= min_bins]


def best_runs(scores: np.ndarray, switch_cost: float) -> list[tuple[int, int, int]]:
    """``best_path`` as runs ``(first, end, state)``, in order, covering every row."""
    path = best_path(scores, switch_cost)
    edges = np.flatnonzero(np.diff(path)) + 1
    firsts, ends = np.r_[0, edges], np.r_[edges, len(path)]
    return [(int(a), int(b), int(path[a])) for a, b in zip(firsts, ends) if b > a]


def two_voices(vectors: np.ndarray, iters: int = 20) -> np.ndarray | None:
    """Two unit centroids ``(2, d)`` of the unit rows of ``vectors`` (spherical 2-means, from
    the row least like their mean and the row least like that one: linear in the rows, for a
    speaker with hours of speech; rows that are not finite left out); ``None`` when the rows do
    not fall in two groups (fewer than two rows, or all of them nearest one centroid)."""
    x = np.asarray(vectors, np.float64)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < 2:
        return None
    i = int(np.argmin(x @ x.mean(axis=0)))
    centroids = x[[i, int(np.argmin(x @ x[i]))]]
    for _ in range(iters):
        nearest = np.argmax(x @ centroids.T, axis=1)
        if nearest.min() == nearest.max():
            return None
        sums = np.stack([x[nearest == k].sum(axis=0) for k in (0, 1)])
        new = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        if np.allclose(new, centroids):
            break
        centroids = new
    return centroids


def bin_windows(first: int, end: int, half: int, bin_s: float) -> list[tuple[float, float]]:
    """For each bin ``first`` <= i < ``end``: the span ``(start_s, end_s)`` of the bins within
    ``half`` of it, inside the range."""
    return [(max(first, i - half) * bin_s, min(end, i + half + 1) * bin_s) for i in range(first, end)]


def join_speakers(
    vectors: np.ndarray, speech_s: np.ndarray, threshold: float, min_speech_s: float, min_count: int = 1
) -> list[int]:
    """A group per speaker (``vectors`` ``(n, d)``, unit voices; ``speech_s`` their clean speech):
    the two groups whose voices (speech-weighted means of their members') are most similar
    join while that cosine is at least ``threshold`` and both have ``min_speech_s`` of speech,
    down to ``min_count`` groups. Group ids are the index of each group's first member."""
    v = np.asarray(vectors, np.float64)
    w = np.asarray(speech_s, np.float64)
    group = list(range(len(v)))
    alive = {i: (v[i] * w[i], w[i]) for i in range(len(v)) if np.all(np.isfinite(v[i]))}
    while len({group[i] for i in range(len(v))}) > max(min_count, 1):
        best, pair = threshold, None
        keys = sorted(alive)
        for x, a in enumerate(keys):
            for b in keys[x + 1 :]:
                (sa, na), (sb, nb) = alive[a], alive[b]
                if min(na, nb) < min_speech_s:
                    continue
                cos = float(sa @ sb / max(np.linalg.norm(sa) * np.linalg.norm(sb), 1e-12))
                if cos >= best:
                    best, pair = cos, (a, b)
        if pair is None:
            break
        a, b = pair
        alive[a] = (alive[a][0] + alive[b][0], alive[a][1] + alive[b][1])
        del alive[b]
        group = [a if g == b else g for g in group]
    return group


def _exclusive(turns: list[Turn]) -> list[Turn]:
    """Overlapping turns cut so that one speaker holds each instant (the later start wins)."""
    out: list[Turn] = []
    for t in sorted(turns, key=lambda t: t.start_s):
        if out and out[-1].end_s > t.start_s:
            prev = out.pop()
            if t.start_s > prev.start_s:
                out.append(Turn(prev.start_s, t.start_s, prev.speaker))
        out.append(t)
    return out


def _bin_jobs(turns: list[Turn], bins, window_s: float, min_bins: int):
    """``(jobs, spans)``: for each of ``turns`` with ``min_bins`` or more bins wholly inside it,
    ``(turn, first, end, at)`` (its bins, and where its windows start in ``spans``), and every
    bin's window of about ``window_s`` (the bin and as many either side) inside its turn
    (``bin_windows``)."""
    half = int(round((window_s / bins.bin_s - 1) / 2))
    jobs, spans = [], []
    for t in turns:
        first, end = bins.inside(t.start_s, t.end_s)
        if end - first >= min_bins:
            jobs.append((t, first, end, len(spans)))
            spans += bin_windows(first, end, half, bins.bin_s)
    return jobs, spans


def _stretch(t: Turn, first: int, end: int, a: int, b: int, bin_s: float) -> tuple[float, float]:
    """Bins ``a`` <= i < ``b`` of turn ``t`` (whose bins are ``first`` <= i < ``end``) in
    seconds, out to the turn's own edges at either end."""
    start_s = t.start_s if a == 0 else (first + a) * bin_s
    end_s = t.end_s if first + b == end else (first + b) * bin_s
    return round(start_s, 3), round(end_s, 3)

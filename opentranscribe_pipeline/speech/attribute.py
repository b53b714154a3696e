"""Speaker on every word and segment: joining ASR words with diarization turns.

WhisperX's ``assign_word_speakers`` gives a word the speaker whose turns overlap it most
and leaves words that overlap no turn without a speaker (the "missing speaker key"
complaint), and keeps a whole segment on one speaker even when the speaker changes inside
it. Here:

1. a word takes the speaker with the largest overlap (seconds) with their turns, each
   speaker's turns counted once where they overlap each other (the union of the speaker's
   turns); ``speaker_overlap`` is that overlap over the word's length, 0..1;
2. a word overlapping no turn (in a pause, or timed slightly off) takes the nearest turn's
   speaker, so no word is ever left without one when the file has turns (overlap 0.0);
3. a weakly attributed word (under half of it inside its speaker's turns) sandwiched
   between two words of one other speaker in the same sentence joins them: word timings
   from cross-attention can spill a few tens of milliseconds over a turn boundary; its
   ``speaker_overlap`` is then measured again against its new speaker's turns (the column
   always describes the speaker the word has);
4. segments are split wherever the speaker changes between consecutive words, so each
   segment has exactly one speaker.

Turns of *different* speakers may overlap (``speaker_turns`` keeps overlapped speech): a
word inside overlapped speech goes to the speaker holding more of it (a tie: the first
label in sort order).

Pure functions over plain arrays; no Dagster, no models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np

from .diarize import Turn

NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue", "bo"})
MIN_WORD_S = 0.02  # zero-length words are treated as this long, centred on their time


@dataclass(frozen=True)
class WordSpeaker:
    speaker: str | None
    overlap: float | None  # fraction of the word inside its speaker's turns; 0.0 = nearest


def merge_speaker_turns(turns: list[Turn]) -> list[Turn]:
    """Each speaker's overlapping or touching turns merged into one (rule 1: a speaker's
    seconds are counted once); zero-length turns stay where they are alone."""
    out: list[Turn] = []
    for spk in sorted({t.speaker for t in turns}):
        cur: list[float] | None = None
        for s, e in sorted((t.start_s, max(t.start_s, t.end_s)) for t in turns if t.speaker == spk):
            if cur is not None and s <= cur[1]:
                cur[1] = max(cur[1], e)
                continue
            if cur is not None:
                out.append(Turn(cur[0], cur[1], spk))
            cur = [s, e]
        if cur is not None:
            out.append(Turn(cur[0], cur[1], spk))
    return out


def _widened(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word spans, zero-length words treated as :data:`MIN_WORD_S` long, centred."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    mid = (starts + ends) / 2
    half = np.maximum((ends - starts) / 2, MIN_WORD_S / 2)
    return mid - half, mid + half


def share_inside(start: float, end: float, merged: list[Turn], speaker: str) -> float:
    """Fraction of the (widened) word inside ``speaker``'s turns, 0..1 (``merged``: the
    file's turns through :func:`merge_speaker_turns`)."""
    (a,), (b,) = _widened(np.array([start]), np.array([end]))
    inside = sum(max(0.0, min(b, t.end_s) - max(a, t.start_s)) for t in merged if t.speaker == speaker)
    return float(min(1.0, inside / (b - a)))


def assign_word_speakers(starts: np.ndarray, ends: np.ndarray, turns: list[Turn]) -> list[WordSpeaker]:
    """One speaker per word (rules 1 and 2); ``None`` only when there are no turns at all."""
    n = len(starts)
    if n == 0:
        return []
    if not turns:
        return [WordSpeaker(None, None)] * n
    turns = merge_speaker_turns(turns)
    ws, we = _widened(starts, ends)  # (n,)
    speakers = sorted({t.speaker for t in turns})
    idx = {s: i for i, s in enumerate(speakers)}
    ts = np.array([t.start_s for t in turns])
    te = np.array([t.end_s for t in turns])
    tk = np.array([idx[t.speaker] for t in turns])

    out: list[WordSpeaker] = []
    chunk = max(1, 2_000_000 // max(1, len(turns)))  # bound the (words x turns) matrix
    for lo in range(0, n, chunk):
        a, b = ws[lo : lo + chunk, None], we[lo : lo + chunk, None]
        ov = np.clip(np.minimum(b, te[None]) - np.maximum(a, ts[None]), 0, None)  # (w, turns)
        per_spk = np.zeros((ov.shape[0], len(speakers)))
        np.add.at(per_spk.T, tk, ov.T)
        best = per_spk.argmax(axis=1)
        best_ov = per_spk[np.arange(len(best)), best]
        # distance from each word to each turn (0 when they touch)
        gap = np.maximum(ts[None] - b, 0) + np.maximum(a - te[None], 0)
        nearest = tk[gap.argmin(axis=1)]
        length = (b - a)[:, 0]
        for i in range(len(best)):
            if best_ov[i] > 0:
                out.append(WordSpeaker(speakers[best[i]], float(min(1.0, best_ov[i] / length[i]))))
            else:
                out.append(WordSpeaker(speakers[nearest[i]], 0.0))
    return out


def smooth_sandwiched(segment_ids: np.ndarray, assigned: list[WordSpeaker]) -> list[WordSpeaker]:
    """Rule 3 of the module docstring. A moved word keeps the overlap it had (with the
    speaker it leaves): :func:`attribute_file` measures it again against its new speaker."""
    out = list(assigned)
    for i in range(1, len(out) - 1):
        prev, cur, nxt = out[i - 1], out[i], out[i + 1]
        if (
            segment_ids[i - 1] == segment_ids[i] == segment_ids[i + 1]
            and prev.speaker == nxt.speaker
            and cur.speaker != prev.speaker
            and (cur.overlap or 0.0) < 0.5
        ):
            out[i] = WordSpeaker(prev.speaker, cur.overlap)
    return out


def dominant_speaker(start: float, end: float, turns: list[Turn]) -> str | None:
    """Speaker of a span with no words: most overlap, else the nearest turn."""
    got = assign_word_speakers(np.array([start]), np.array([end]), turns)
    return got[0].speaker if got else None


def join_words(words: list[str], language: str | None) -> str:
    sep = "" if (language or "") in NO_SPACE_LANGUAGES else " "
    return sep.join(w for w in words if w).strip()


class SegmentRow(TypedDict):
    """An ``asr_segments`` row as ``attribute_file`` reads it (other keys are carried over)."""

    segment_id: int
    start_s: float
    end_s: float
    text: str
    language: str | None


class WordRow(TypedDict):
    """An ``asr_words`` row as ``attribute_file`` reads it (other keys are carried over)."""

    segment_id: int
    word_index: int
    word: str
    start_s: float
    end_s: float


class SpeakerSegmentRow(SegmentRow):
    """A ``segments`` row: an ASR segment, or the piece of one, with its speaker."""

    speaker: str | None


class SpeakerWordRow(WordRow):
    """A ``words`` row: the word renumbered within its piece, with its speaker and how much of
    the word that speaker's turns cover."""

    speaker: str | None
    speaker_overlap: float | None


class AttributedFile(NamedTuple):
    """One file's rows with a speaker on each (unpacks as ``segments, words``)."""

    segments: list[SpeakerSegmentRow]
    words: list[SpeakerWordRow]


def attribute_file(segments: Sequence[SegmentRow], words: Sequence[WordRow], turns: list[Turn]) -> AttributedFile:
    """Speakers for one file's ASR output.

    ``segments``: :class:`SegmentRow` dicts (plus any other keys, carried over); ``words``:
    :class:`WordRow` dicts (plus others). Returns new segment and word dicts: segments split at speaker changes
    and renumbered from 0, words renumbered within their new segment, each with
    ``speaker`` (and ``speaker_overlap`` on words).
    """
    words = sorted(words, key=lambda w: (w["segment_id"], w["word_index"]))
    assigned = assign_word_speakers(
        np.array([w["start_s"] for w in words]), np.array([w["end_s"] for w in words]), turns
    )
    smoothed = smooth_sandwiched(np.array([w["segment_id"] for w in words]), assigned)
    moved = [i for i, (a, s) in enumerate(zip(assigned, smoothed)) if a.speaker != s.speaker]
    if moved:  # rule 3: the overlap with the word's new speaker
        merged = merge_speaker_turns(turns)
        for i in moved:
            sp = smoothed[i].speaker
            smoothed[i] = WordSpeaker(sp, share_inside(words[i]["start_s"], words[i]["end_s"], merged, sp))
    assigned = smoothed
    by_segment: dict[int, list[tuple[WordRow, WordSpeaker]]] = {}
    for w, a in zip(words, assigned):
        by_segment.setdefault(w["segment_id"], []).append((w, a))

    out_segments: list[SpeakerSegmentRow] = []
    out_words: list[SpeakerWordRow] = []
    for seg in sorted(segments, key=lambda s: (s["start_s"], s["segment_id"])):
        members = by_segment.get(seg["segment_id"], [])
        if not members:
            out_segments.append(
                {
                    **seg,
                    "segment_id": len(out_segments),
                    "speaker": dominant_speaker(seg["start_s"], seg["end_s"], turns),
                }
            )
            continue
        runs: list[list[tuple[WordRow, WordSpeaker]]] = []
        for item in members:
            if runs and runs[-1][-1][1].speaker == item[1].speaker:
                runs[-1].append(item)
            else:
                runs.append([item])
        for run in runs:
            seg_id = len(out_segments)
            text = seg["text"] if len(runs) == 1 else join_words([w["word"] for w, _ in run], seg.get("language"))
            out_segments.append(
                {
                    **seg,
                    "segment_id": seg_id,
                    # the first and last piece keep the sentence's outer bounds
                    "start_s": seg["start_s"] if run is runs[0] else run[0][0]["start_s"],
                    "end_s": seg["end_s"] if run is runs[-1] else run[-1][0]["end_s"],
                    "text": text,
                    "speaker": run[0][1].speaker,
                }
            )
            for i, (w, a) in enumerate(run):
                out_words.append(
                    {**w, "segment_id": seg_id, "word_index": i, "speaker": a.speaker, "speaker_overlap": a.overlap}
                )
    for s in out_segments:
        if s["end_s"] < s["start_s"]:
            s["end_s"] = s["start_s"]
    return AttributedFile(out_segments, out_words)

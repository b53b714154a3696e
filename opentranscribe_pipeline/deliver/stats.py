"""Conversation analytics per media item and local speaker, from speaker turns and words.

Definitions (all in seconds of media time; turns are first cut to the media, ``[0,
duration_s]``, so that a turn running past the end counts only up to the end):

- a speaker's **turns** are their diarization turns, with consecutive turns of the same
  speaker joined when nobody else speaks in between and the pause is under
  :data:`JOIN_PAUSE_S` (diarizers cut one utterance into pieces at short pauses); pieces of
  one speaker that overlap or touch are always one turn, and another speaker's turn splits
  one only where it reaches into the pause (a backchannel during a piece does not);
- **talk_s**: the union of the speaker's turns (their overlapped speech counts for them),
  never the pauses between them; **share_of_talk**: talk_s over the sum of every speaker's
  talk_s in the file;
- **longest_turn_s**: the speaker's own speech inside their longest joined turn (the union
  of the pieces it was joined from, without the pauses that joined them). A turn is a unit
  of conversation, so it is counted by joined turns, but it is *measured* like ``talk_s``,
  in seconds of speech: a time measure that included the silence it spans could exceed
  the speaker's whole talk time (one speaker, 2 s + 0.5 s pause + 1.5 s: talk 3.5 s, and
  longest turn 3.5 s, not 4 s), and "talk time" never includes silence;
- an **interruption**: a turn that starts while another speaker's turn is still going
  (strictly inside it); so a speaker has at most one per turn;
- **n_questions**: the speaker's sentences (segments) ending in ``?``;
- **words_per_minute**: the speaker's words over their talk time (0 with no talk time);
- media: **speech_s** = union of all turns, **overlap_s** = time with two or more speakers,
  **silence_s** = duration - speech_s, **speaker_switches** = changes of speaker between
  consecutive turns in time order.

A zero-length turn is no speech: it adds no time, never separates two pieces of another
speaker, but it is a turn (a speaker whose turns are all zero-length has a row with 1 or
more turns and 0 s of talk). The order of the input turns does not matter.

A file whose diarization failed has no speaker rows; its media row counts the time spanned
by its words as speech, with ``n_speakers`` 0 and ``diarized`` false.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

JOIN_PAUSE_S = 1.0


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float
    speaker: str

    @property
    def length(self) -> float:
        return max(0.0, self.end_s - self.start_s)


def union_length(spans: Iterable[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def overlap_length(spans: Sequence[Span]) -> float:
    """Seconds during which two or more speakers speak (sweep over turn edges)."""
    edges = []
    for sp in spans:
        if sp.length > 0:
            edges += [(sp.start_s, 1, sp.speaker), (sp.end_s, -1, sp.speaker)]
    edges.sort(key=lambda e: (e[0], e[1]))
    active: dict[str, int] = {}
    total, last_t = 0.0, None
    for t, delta, spk in edges:
        if last_t is not None and sum(1 for v in active.values() if v > 0) >= 2:
            total += t - last_t
        active[spk] = active.get(spk, 0) + delta
        last_t = t
    return total


def clip_turns(turns: Sequence[Span], duration_s: float) -> list[Span]:
    """Turns cut to the media, ``[0, duration_s]`` (unknown duration, 0 or less: as they are)."""
    if not duration_s or duration_s <= 0:
        return [Span(t.start_s, max(t.start_s, t.end_s), t.speaker) for t in turns]
    out = []
    for t in turns:
        start = min(max(t.start_s, 0.0), duration_s)
        out.append(Span(start, min(max(t.end_s, start), duration_s), t.speaker))
    return out


def _open_union(spans: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The union of the open intervals ``(start, end)`` (zero-length ones are empty), as
    sorted disjoint intervals: their starts and their ends."""
    starts: list[float] = []
    ends: list[float] = []
    for s, e in sorted(sp for sp in spans if sp[1] > sp[0]):
        if ends and s < ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def _meets(union: tuple[list[float], list[float]], lo: float, hi: float) -> bool:
    """Does the open interval ``(lo, hi)`` share a positive length with ``union``?"""
    starts, ends = union
    k = bisect_right(ends, lo)  # the first interval ending after lo
    return k < len(starts) and starts[k] < hi and lo < hi


def _contains(union: tuple[list[float], list[float]], t: float) -> bool:
    """Is ``t`` strictly inside one of the intervals of ``union``?"""
    starts, ends = union
    k = bisect_right(starts, t) - 1  # the last interval starting at or before t
    return k >= 0 and starts[k] < t < ends[k]


def _join(turns: Sequence[Span], pause_s: float) -> list[tuple[Span, float]]:
    """Joined turns (module docstring) in time order, each with the seconds of its
    speaker's own speech inside it."""
    speakers = sorted({t.speaker for t in turns})
    out: list[tuple[Span, float]] = []
    for spk in speakers:
        others = _open_union((t.start_s, t.end_s) for t in turns if t.speaker != spk)
        mine = sorted((t.start_s, max(t.start_s, t.end_s)) for t in turns if t.speaker == spk)
        cur_s, cur_e = mine[0]
        speech = cur_e - cur_s
        for s, e in mine[1:]:
            if s <= cur_e:  # overlapping or touching pieces: one turn
                speech += max(0.0, e - cur_e)
                cur_e = max(cur_e, e)
            elif s - cur_e < pause_s and not _meets(others, cur_e, s):  # a short pause, nobody in it
                speech += e - s
                cur_e = e
            else:
                out.append((Span(cur_s, cur_e, spk), speech))
                cur_s, cur_e, speech = s, e, e - s
        out.append((Span(cur_s, cur_e, spk), speech))
    out.sort(key=lambda item: (item[0].start_s, item[0].end_s, item[0].speaker))
    return out


def join_turns(turns: Sequence[Span], pause_s: float = JOIN_PAUSE_S) -> list[Span]:
    """Consecutive pieces of one speaker's speech joined into turns (see module docstring),
    in time order (start, end, speaker: the same for any order of ``turns``)."""
    return [span for span, _ in _join(turns, pause_s)]


@dataclass(frozen=True)
class SpeakerStat:
    speaker: str
    talk_s: float
    share_of_talk: float
    n_words: int
    n_turns: int
    words_per_minute: float
    n_questions: int
    n_interruptions: int
    longest_turn_s: float


@dataclass(frozen=True)
class MediaStat:
    speech_s: float
    silence_s: float
    overlap_s: float
    n_speakers: int
    speaker_switches: int
    words_per_minute: float
    n_words: int
    diarized: bool


def _wpm(words: int, seconds: float) -> float:
    return round(words / (seconds / 60.0), 2) if seconds > 0 else 0.0


def conversation_stats(
    duration_s: float,
    turns: Sequence[Span],
    word_speakers: Sequence[str | None],
    sentences: Sequence[tuple[str | None, str]],
    word_spans: Sequence[tuple[float, float]] = (),
    diarized: bool = True,
) -> tuple[list[SpeakerStat], MediaStat]:
    """Stats of one media item. ``turns``: its diarization turns; ``word_speakers``: the
    speaker of each word; ``sentences``: (speaker, text) of each segment; ``word_spans``:
    (start, end) of each word, used as speech only when the file has no turns."""
    n_words = len(word_speakers)
    if not diarized or not turns:
        spans = clip_turns([Span(s, e, "") for s, e in word_spans], duration_s)
        speech = union_length((w.start_s, w.end_s) for w in spans) if spans else 0.0
        media = MediaStat(
            round(speech, 3),
            round(max(0.0, duration_s - speech), 3),
            0.0,
            0,
            0,
            _wpm(n_words, speech),
            n_words,
            diarized,
        )
        return [], media
    turns = clip_turns(turns, duration_s)
    joined = _join(turns, JOIN_PAUSE_S)
    speakers = sorted({t.speaker for t in turns})
    talk = {s: union_length((t.start_s, t.end_s) for t in turns if t.speaker == s) for s in speakers}
    total_talk = sum(talk.values())
    words_of: dict[str, int] = {}
    for spk in word_speakers:
        if spk is not None:
            words_of[spk] = words_of.get(spk, 0) + 1
    questions: dict[str, int] = {}
    for spk, text in sentences:
        if spk is not None and text.rstrip().rstrip("\"')]}”’»").endswith(("?", "？")):
            questions[spk] = questions.get(spk, 0) + 1
    turns_of = {s: [(j, speech) for j, speech in joined if j.speaker == s] for s in speakers}
    out = []
    for s in speakers:
        others = _open_union((j.start_s, j.end_s) for j, _ in joined if j.speaker != s)
        mine = turns_of[s]
        out.append(
            SpeakerStat(
                speaker=s,
                talk_s=round(talk[s], 3),
                share_of_talk=round(talk[s] / total_talk, 4) if total_talk else 0.0,
                n_words=words_of.get(s, 0),
                n_turns=len(mine),
                words_per_minute=_wpm(words_of.get(s, 0), talk[s]),
                n_questions=questions.get(s, 0),
                n_interruptions=sum(1 for j, _ in mine if _contains(others, j.start_s)),
                # own speech in the longest turn: never more than talk_s (module docstring)
                longest_turn_s=round(min(max(speech for _, speech in mine), talk[s]), 3),
            )
        )
    speech = union_length((t.start_s, t.end_s) for t in turns)
    switches = sum(1 for (a, _), (b, _) in zip(joined, joined[1:]) if a.speaker != b.speaker)
    media = MediaStat(
        speech_s=round(speech, 3),
        silence_s=round(max(0.0, duration_s - speech), 3),
        overlap_s=round(overlap_length(turns), 3),
        n_speakers=len(speakers),
        speaker_switches=switches,
        words_per_minute=_wpm(n_words, speech),
        n_words=n_words,
        diarized=True,
    )
    return out, media

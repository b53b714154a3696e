"""Conversation analytics per media item and local speaker, from speaker turns and words.

Definitions (all in seconds of media time):

- a speaker's **turns** are their diarization turns, with consecutive turns of the same
  speaker joined when nobody else speaks in between and the pause is under
  :data:`JOIN_PAUSE_S` (diarizers cut one utterance into pieces at short pauses);
- **talk_s**: the union of the speaker's turns (their overlapped speech counts for them);
  **share_of_talk**: talk_s over the sum of every speaker's talk_s in the file;
- an **interruption**: a turn that starts while another speaker's turn is still going;
- **n_questions**: the speaker's sentences (segments) ending in ``?``;
- **words_per_minute**: the speaker's words over their talk time;
- media: **speech_s** = union of all turns, **overlap_s** = time with two or more speakers,
  **silence_s** = duration - speech_s, **speaker_switches** = changes of speaker between
  consecutive turns in time order.

A file whose diarization failed has no speaker rows; its media row counts the time spanned
by its words as speech, with ``n_speakers`` 0 and ``diarized`` false.
"""

from __future__ import annotations

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


def join_turns(turns: Sequence[Span], pause_s: float = JOIN_PAUSE_S) -> list[Span]:
    """Consecutive pieces of one speaker's speech joined into turns (see module docstring)."""
    ordered = sorted(turns, key=lambda t: (t.start_s, t.end_s))
    out: list[Span] = []
    for t in ordered:
        prev = out[-1] if out else None
        if prev is not None and prev.speaker == t.speaker and t.start_s - prev.end_s < pause_s:
            out[-1] = Span(prev.start_s, max(prev.end_s, t.end_s), t.speaker)
        else:
            out.append(t)
    return out


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
        speech = union_length(word_spans) if word_spans else 0.0
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
    joined = join_turns(turns)
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
    interruptions = {s: 0 for s in speakers}
    for t in joined:
        if any(o.speaker != t.speaker and o.start_s < t.start_s < o.end_s for o in joined):
            interruptions[t.speaker] += 1
    out = []
    for s in speakers:
        mine = [t for t in joined if t.speaker == s]
        out.append(
            SpeakerStat(
                speaker=s,
                talk_s=round(talk[s], 3),
                share_of_talk=round(talk[s] / total_talk, 4) if total_talk else 0.0,
                n_words=words_of.get(s, 0),
                n_turns=len(mine),
                words_per_minute=_wpm(words_of.get(s, 0), talk[s]),
                n_questions=questions.get(s, 0),
                n_interruptions=interruptions[s],
                longest_turn_s=round(max(t.length for t in mine), 3),
            )
        )
    speech = union_length((t.start_s, t.end_s) for t in turns)
    switches = sum(1 for a, b in zip(joined, joined[1:]) if a.speaker != b.speaker)
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

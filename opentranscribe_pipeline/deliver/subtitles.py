"""Subtitle cues from word timings, and the SRT / WebVTT / TXT renderings.

Cue rules (the broadcast conventions OpenTranscribe follows, enforced by construction):

- at most :data:`MAX_LINE_CHARS` (42) characters per line and :data:`MAX_LINES` (2) lines;
- between :data:`MIN_CUE_S` (1 s) and :data:`MAX_CUE_S` (6 s) on screen;
- at most :data:`MAX_CPS` (20) characters per second of screen time;
- a new cue at every speaker change, after every sentence end and across pauses of
  :data:`MAX_GAP_S` or more; cues never overlap (a cue that needs more screen time than the
  gap before the next one pushes the next one's start, never the other way round).

A cue needing more time than its words take is held on screen into the pause after it; a
word longer than a line is cut into pieces of a line.

Speaker names are escaped for each format: SRT has no escapes, so ``-->`` becomes ``→``
and ``<``/``>`` become ``‹``/``›`` (players read ``<i>``-like tags); WebVTT gets ``&lt;``
``&gt;`` ``&amp;`` in text and in the ``<v Name>`` voice span. Newlines anywhere become spaces
(a blank line ends a cue in both formats).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_S = 1.0
MAX_CUE_S = 6.0
MAX_CPS = 20.0
MAX_GAP_S = 1.5
SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
_CLOSERS = "\"')]}”’»"


@dataclass(frozen=True)
class TimedWord:
    """One word with its times and the name shown for its speaker (None: no speaker)."""

    text: str
    start_s: float
    end_s: float
    speaker: str | None = None


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    speaker: str | None
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def n_chars(self) -> int:
        return sum(len(line) for line in self.lines) + max(0, len(self.lines) - 1)


def one_line(text: str) -> str:
    """No newline, tab or run of spaces survives: a blank line would end the cue."""
    return re.sub(r"\s+", " ", text or "").strip()


def ends_sentence(word: str) -> bool:
    return word.rstrip(_CLOSERS).endswith(SENTENCE_END)


def wrap(words: Sequence[str], first_line_budget: int = MAX_LINE_CHARS) -> list[str] | None:
    """Greedy line fill; None when the words need more than :data:`MAX_LINES` lines."""
    lines: list[str] = []
    current = ""
    budget = first_line_budget
    for w in words:
        candidate = f"{current} {w}" if current else w
        if len(candidate) <= budget:
            current = candidate
            continue
        if not current:  # a single word wider than the line: caller cut it already
            current = w
            continue
        lines.append(current)
        budget = MAX_LINE_CHARS
        current = w
    if current:
        lines.append(current)
    return lines if len(lines) <= MAX_LINES else None


def _pieces(word: str) -> list[str]:
    return [word[i : i + MAX_LINE_CHARS] for i in range(0, len(word), MAX_LINE_CHARS)] or [word]


def _split_long_words(words: Iterable[TimedWord]) -> list[TimedWord]:
    out = []
    for w in words:
        text = one_line(w.text)
        if not text:
            continue
        parts = _pieces(text)
        span = (w.end_s - w.start_s) / len(parts)
        for i, p in enumerate(parts):
            out.append(TimedWord(p, w.start_s + i * span, w.start_s + (i + 1) * span, w.speaker))
    return out


def prefix_budget(speaker: str | None) -> int:
    """Characters left on a cue's first line after the SRT ``Name: `` prefix (kept the same
    in every format, so SRT and WebVTT cues have the same timing and lines)."""
    if not speaker:
        return MAX_LINE_CHARS
    return max(12, MAX_LINE_CHARS - len(srt_name(speaker)) - 2)


def shown_chars(lines: Sequence[str], speaker: str | None) -> int:
    """Characters a viewer reads: the lines, their breaks and the ``Name: `` prefix."""
    prefix = len(srt_name(speaker)) + 2 if speaker else 0
    return sum(len(line) for line in lines) + len(lines) - 1 + prefix


def build_cues(words: Iterable[TimedWord]) -> list[Cue]:
    """Cues for a file's words in time order (see the module docstring for the rules)."""
    words = sorted(_split_long_words(words), key=lambda w: (w.start_s, w.end_s))
    groups: list[list[TimedWord]] = []
    current: list[TimedWord] = []

    def fits(group: list[TimedWord]) -> bool:
        span = group[-1].end_s - group[0].start_s
        if span > MAX_CUE_S:
            return False
        lines = wrap([w.text for w in group], prefix_budget(group[0].speaker))
        if lines is None:
            return False
        chars = shown_chars(lines, group[0].speaker)
        return chars <= MAX_CPS * min(MAX_CUE_S, max(MIN_CUE_S, span))

    for w in words:
        if current:
            last = current[-1]
            boundary = (
                w.speaker != last.speaker
                or ends_sentence(last.text)
                or w.start_s - last.end_s >= MAX_GAP_S
                or not fits([*current, w])
            )
            if boundary:
                groups.append(current)
                current = []
        current.append(w)
    if current:
        groups.append(current)

    cues: list[Cue] = []
    for group in groups:
        lines = wrap([w.text for w in group], prefix_budget(group[0].speaker)) or [" ".join(w.text for w in group)]
        chars = shown_chars(lines, group[0].speaker)
        start = group[0].start_s
        if cues:
            start = max(start, cues[-1].end_s)
        needed = max(MIN_CUE_S, chars / MAX_CPS)
        end = max(group[-1].end_s, start + needed)
        end = min(end, start + MAX_CUE_S)
        end = max(end, start + needed)  # `needed` is at most MAX_CUE_S: rules stay held
        cues.append(Cue(round(start, 3), round(end, 3), group[0].speaker, tuple(lines)))
    return cues


def spread_words(text: str, start_s: float, end_s: float, speaker: str | None) -> list[TimedWord]:
    """Words of a segment without word timings (translations): its span shared out in
    proportion to each word's length."""
    tokens = one_line(text).split(" ")
    tokens = [t for t in tokens if t]
    if not tokens:
        return []
    total = sum(len(t) + 1 for t in tokens)
    span = max(0.0, end_s - start_s)
    out, cursor = [], start_s
    for t in tokens:
        length = span * (len(t) + 1) / total
        out.append(TimedWord(t, cursor, cursor + length, speaker))
        cursor += length
    return out


# -- escaping ---------------------------------------------------------------------------
def srt_name(name: str) -> str:
    return srt_text(name)


def srt_text(text: str) -> str:
    """SRT has no escapes: neutralise what breaks parsers or renders as markup."""
    return one_line(text).replace("-->", "→").replace("<", "‹").replace(">", "›")


def vtt_text(text: str) -> str:
    return one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- renderings -------------------------------------------------------------------------
def timestamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip; the speaker as a ``Name: `` prefix on the first line of each cue."""
    blocks = []
    for n, cue in enumerate(cues, start=1):
        lines = [srt_text(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"{srt_name(cue.speaker)}: {lines[0]}"
        blocks.append(f"{n}\n{timestamp(cue.start_s, ',')} --> {timestamp(cue.end_s, ',')}\n" + "\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT; the speaker as the standard voice span ``<v Name>`` on each cue."""
    out = ["WEBVTT", ""]
    for n, cue in enumerate(cues, start=1):
        lines = [vtt_text(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"<v {vtt_text(cue.speaker)}>{lines[0]}"
        out += [str(n), f"{timestamp(cue.start_s, '.')} --> {timestamp(cue.end_s, '.')}", *lines, ""]
    return "\n".join(out)

"""Subtitle cues from word timings, and the SRT / WebVTT / TXT renderings.

Cue rules (the broadcast conventions OpenTranscribe follows):

- at most :data:`MAX_LINE_CHARS` (42) characters per line, the SRT ``Name: `` prefix
  included, and :data:`MAX_LINES` (2) lines; a name longer than :data:`MAX_NAME_CHARS` is
  shortened with ``…`` in the SRT prefix, a word wider than the first line after the name
  (:func:`prefix_budget`, at least 18 characters) is cut into pieces of that width;
- a new cue at every speaker change, after every sentence end and across pauses of
  :data:`MAX_GAP_S` or more; cues never overlap;
- **timing follows the words**: a cue starts within :data:`START_SLACK_S` (0.3 s) of its
  first word's start and ends at most :data:`TAIL_S` (0.5 s) after its last word's end,
  never after the next cue's start and never past the end of the media; it is on screen at
  most :data:`MAX_CUE_S` (6 s);
- reading time: at least :data:`MIN_CUE_S` (1 s) and at most :data:`MAX_CPS` (20)
  characters per second, the ``Name: `` prefix counted. These are met by **grouping words**
  (a run of words between two cuts is split into cues by a small dynamic programme that
  prefers full cues, since the name prefix and the silence around a cue are shared by all
  its words) and by **using the silence around a cue** (up to 0.5 s after its last word,
  up to 0.3 s before its first), never by delaying text. Where that is not enough (a very
  fast speaker, one word between two speaker changes, a cue squeezed between overlapping
  speakers) the timing rule wins and the reading rule is relaxed for that cue only: such a
  cue then starts as early and ends as late as the timing rule allows (it touches its
  neighbours or uses the whole silence). The old behaviour, holding every cue for its
  reading time and pushing the next one later, made subtitles drift by up to a minute.
- a cue whose next cue's first word starts less than :data:`MIN_FLASH_S` (0.25 s) after it
  (two speakers starting together) would only flash: the next cue waits up to that, at most
  :data:`START_SLACK_S`, never past its own first word's end nor past the first word of the
  cue after it.
- the end of the media is ``build_cues``'s ``media_end_s`` (the caller passes the duration);
  words past it are shown up to it.

Cue text is data, never markup or layout: :func:`one_line` turns line breaks and other
whitespace controls (CR, LF, TAB, U+2028, ...: a blank line would end the cue) into spaces,
drops the other control characters (NUL, ...), bidi embeddings, overrides and isolates
(U+202A-U+202E, U+2066-U+2069) and a byte-order mark, and collapses whitespace, in the words
and the names alike. SRT has no escapes, so ``-->`` becomes ``→``, ``<``/``>`` become
``‹``/``›`` (players read ``<i>``-like tags) and ``{``/``}`` become ``｛``/``｝`` (players
read ``{\\an8}``-like override tags); WebVTT gets ``&lt;`` ``&gt;`` ``&amp;`` in text and in
the ``<v Name>`` voice span (so ``-->`` cannot appear either). The writers apply all of this
themselves, whatever :class:`Cue` they are given.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_S = 1.0
MAX_CUE_S = 6.0
MAX_CPS = 20.0
MAX_GAP_S = 1.5
START_SLACK_S = 0.3  # a cue starts at most this far from its first word's start (either way)
TAIL_S = 0.5  # and ends at most this long after its last word's end
MIN_FLASH_S = 0.25  # shortest time on screen worth delaying the next cue for (at most START_SLACK_S)
MIN_FIRST_LINE = 18  # characters left for text on the first SRT line after the longest name
MAX_NAME_CHARS = MAX_LINE_CHARS - MIN_FIRST_LINE - 2  # shown in the SRT ``Name: `` prefix
SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
_CLOSERS = "\"')]}”’»"
# what a cue's files depend on besides the words and names: bump when the same words give
# other cues (assets/versions.py's ``exports`` step version should carry it)
CUES_VERSION = "cues/2"

# control characters (C0, DEL, C1), line/paragraph separators, bidi embeddings, overrides
# and isolates, byte-order mark: whitespace-like ones become a space, the rest go
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")


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
    """Plain text on one line: no control or bidi character, no newline, tab or run of
    spaces survives (a blank line would end a cue; an override would reorder the text)."""
    text = _INVISIBLE.sub("", _BREAKS.sub(" ", text or ""))
    return _SPACES.sub(" ", text).strip()


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


def balanced(words: Sequence[str], first_line_budget: int = MAX_LINE_CHARS) -> list[str] | None:
    """:func:`wrap`, but two lines are cut where the longer of them (the first with the SRT
    ``Name: `` prefix) is shortest, not as full as the first can be."""
    lines = wrap(words, first_line_budget)
    if lines is None or len(lines) < 2:
        return lines
    prefix = MAX_LINE_CHARS - first_line_budget
    best = None
    for i in range(1, len(words)):
        first, second = " ".join(words[:i]), " ".join(words[i:])
        if len(first) <= first_line_budget and len(second) <= MAX_LINE_CHARS:
            key = (max(prefix + len(first), len(second)), len(first))
            if best is None or key < best[0]:
                best = (key, [first, second])
    return best[1] if best else lines


def prefix_budget(speaker: str | None) -> int:
    """Characters left on a cue's first line after the SRT ``Name: `` prefix (kept the same
    in every format, so SRT and WebVTT cues have the same timing and lines); at least
    :data:`MIN_FIRST_LINE`. Words wider than this are cut into pieces of this width."""
    if not speaker:
        return MAX_LINE_CHARS
    return max(MIN_FIRST_LINE, MAX_LINE_CHARS - len(srt_name(speaker)) - 2)


def shown_chars(lines: Sequence[str], speaker: str | None) -> int:
    """Characters a viewer reads: the lines, their breaks and the ``Name: `` prefix."""
    prefix = len(srt_name(speaker)) + 2 if speaker else 0
    return sum(len(line) for line in lines) + len(lines) - 1 + prefix


def reading_time(lines: Sequence[str], speaker: str | None) -> float:
    """Seconds a cue should stay on screen to be read: at least :data:`MIN_CUE_S`, at most
    :data:`MAX_CPS` characters per second (never more than :data:`MAX_CUE_S`)."""
    return min(MAX_CUE_S, max(MIN_CUE_S, shown_chars(lines, speaker) / MAX_CPS))


def _prepare(words: Iterable[TimedWord], media_end_s: float | None) -> list[TimedWord]:
    """Clean text; a word holding spaces split there and words wider than the first line cut
    into pieces, the pieces sharing the word's time equally; in time order (as spoken);
    times then kept inside [0, media end]."""
    out = []
    for w in words:
        text = one_line(w.text)
        if not text:
            continue
        start = float(w.start_s)
        end = max(start, float(w.end_s))
        width = prefix_budget(w.speaker)
        parts = [token[i : i + width] for token in text.split(" ") for i in range(0, len(token), width)]
        span = (end - start) / len(parts)
        out += [TimedWord(p, start + i * span, start + (i + 1) * span, w.speaker) for i, p in enumerate(parts)]
    out.sort(key=lambda w: (w.start_s, w.end_s))
    top = float("inf") if media_end_s is None else max(0.0, media_end_s)
    return [TimedWord(w.text, min(max(0.0, w.start_s), top), min(max(0.0, w.end_s), top), w.speaker) for w in out]


def _runs(words: list[TimedWord]) -> list[list[TimedWord]]:
    """Words between two hard cuts: speaker change, sentence end, pause of MAX_GAP_S."""
    runs: list[list[TimedWord]] = []
    for w in words:
        if runs:
            last = runs[-1][-1]
            if not (w.speaker != last.speaker or ends_sentence(last.text) or w.start_s - last.end_s >= MAX_GAP_S):
                runs[-1].append(w)
                continue
        runs.append([w])
    return runs


def _split_run(run: list[TimedWord], before_s: float, after_s: float) -> list[list[TimedWord]]:
    """The run's words as cues: each fits :data:`MAX_LINES` lines and spans at most
    :data:`MAX_CUE_S`; among those splits the one with the least missing reading time
    (estimated with a share of the silence around each cue), then the fewest and most even
    cues. ``before_s``/``after_s``: where the previous run's words end and the next run's
    words start."""
    n = len(run)
    speaker = run[0].speaker
    budget = prefix_budget(speaker)
    prefix = len(srt_name(speaker)) + 2 if speaker else 0
    inf = float("inf")
    best = [inf] * (n + 1)  # best[j]: cost of cutting run[:j] into cues
    back = [0] * (n + 1)
    best[0] = 0.0
    for j in range(n):
        if best[j] == inf:
            continue
        prev_end = run[j - 1].end_s if j else before_s
        lead = min(START_SLACK_S, max(0.0, (run[j].start_s - prev_end) * 0.4))
        n_lines, line_len, chars, end = 1, 0, prefix, run[j].start_s
        for k in range(j, n):
            w = run[k]
            size = len(w.text)
            if k == j:
                line_len, chars = size, chars + size
            elif line_len + 1 + size <= (budget if n_lines == 1 else MAX_LINE_CHARS):
                line_len, chars = line_len + 1 + size, chars + 1 + size
            else:
                n_lines, line_len, chars = n_lines + 1, size, chars + 1 + size
                if n_lines > MAX_LINES:
                    break
            end = max(end, w.end_s)
            if k > j and end - run[j].start_s > MAX_CUE_S:
                break
            next_start = run[k + 1].start_s if k + 1 < n else after_s
            tail = min(TAIL_S, max(0.0, (next_start - end) * 0.6))
            shown = min(MAX_CUE_S, end - run[j].start_s + lead + tail)
            missing = max(0.0, min(MAX_CUE_S, max(MIN_CUE_S, chars / MAX_CPS)) - shown)
            cost = best[j] + 10.0 * missing + 1.0 + 1e-4 * chars * chars
            if cost < best[k + 1]:
                best[k + 1], back[k + 1] = cost, j
    groups, k = [], n
    while k > 0:
        groups.append(run[back[k] : k])
        k = back[k]
    return groups[::-1]


def _place(groups: list[list[TimedWord]], needs: list[float], media_end_s: float | None) -> list[tuple[float, float]]:
    """(start, end) of each group's cue: see the module docstring's timing rule."""
    n = len(groups)
    end_of_media = float("inf") if media_end_s is None else media_end_s
    s = [g[0].start_s for g in groups]
    e = [max(w.end_s for w in g) for g in groups]

    def lead_wanted(i: int) -> float:
        """How much earlier than its first word cue i wants to start (the silence after it
        given to it in full)."""
        after = s[i + 1] if i + 1 < n else end_of_media
        best_end = min(max(e[i], s[i] + needs[i]), e[i] + TAIL_S, s[i] + MAX_CUE_S, after, end_of_media)
        return min(START_SLACK_S, max(0.0, needs[i] - (best_end - s[i])))

    starts, ends = [0.0] * n, [0.0] * n
    if n:
        starts[0] = max(0.0, s[0] - lead_wanted(0))
    for i in range(n):
        st = starts[i]
        if i + 1 == n:
            ends[i] = min(max(e[i], st + needs[i]), e[i] + TAIL_S, st + MAX_CUE_S, end_of_media)
            break
        gap = s[i + 1] - e[i]
        if gap > 0:
            tail = min(TAIL_S, max(0.0, st + needs[i] - e[i]), max(0.0, st + MAX_CUE_S - e[i]))
            lead = lead_wanted(i + 1)
            if tail + lead <= gap:
                end, nxt = e[i] + tail, s[i + 1] - lead
            else:  # both want more of the silence than there is: shared in proportion
                end = nxt = e[i] + gap * tail / (tail + lead)
        else:  # overlapping speech: the next cue takes over at its first word
            end = nxt = s[i + 1]
        if nxt - st < MIN_FLASH_S and end >= nxt:  # a flash: the next cue waits a little
            limit = min(s[i + 1] + START_SLACK_S, e[i + 1], s[i + 2] if i + 2 < n else end_of_media, end_of_media)
            end = nxt = max(nxt, min(st + MIN_FLASH_S, limit))
        ends[i] = min(end, st + MAX_CUE_S)
        starts[i + 1] = max(nxt, st)
    # a cue still short of its reading time takes what is left of the silence around it
    for i in range(n):
        if ends[i] - starts[i] >= needs[i]:
            continue
        latest = min(e[i] + TAIL_S, starts[i + 1] if i + 1 < n else end_of_media, starts[i] + MAX_CUE_S, end_of_media)
        if ends[i] < latest:  # the silence after the words first
            ends[i] = min(latest, starts[i] + needs[i])
        earliest = max(s[i] - START_SLACK_S, ends[i - 1] if i else 0.0, 0.0)
        if starts[i] > earliest and ends[i] - starts[i] < needs[i]:
            starts[i] = max(earliest, ends[i] - needs[i])
    return list(zip(starts, ends))


def build_cues(words: Iterable[TimedWord], media_end_s: float | None = None) -> list[Cue]:
    """Cues for a file's words (see the module docstring for the rules); ``media_end_s``:
    the media's duration, past which no cue is shown (None: unknown)."""
    prepared = _prepare(words, media_end_s)
    runs = _runs(prepared)
    groups: list[list[TimedWord]] = []
    for r, run in enumerate(runs):
        before = runs[r - 1][-1].end_s if r else 0.0
        after = runs[r + 1][0].start_s if r + 1 < len(runs) else float("inf") if media_end_s is None else media_end_s
        groups += _split_run(run, before, after)
    lines = [
        balanced([w.text for w in g], prefix_budget(g[0].speaker)) or [" ".join(w.text for w in g)] for g in groups
    ]
    needs = [reading_time(ls, g[0].speaker) for ls, g in zip(lines, groups)]
    last_ms = float("inf") if media_end_s is None else math.floor(media_end_s * 1000) / 1000
    cues = []
    for (start, end), g, ls in zip(_place(groups, needs, media_end_s), groups, lines):
        end = min(round(end, 3), last_ms)  # whole milliseconds, never past the end of the media
        cues.append(Cue(min(round(start, 3), end), end, g[0].speaker, tuple(ls)))
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
@functools.lru_cache(maxsize=4096)
def srt_name(name: str) -> str:
    """A name as the SRT ``Name: `` prefix shows it: escaped, at most :data:`MAX_NAME_CHARS`."""
    shown = srt_text(name)
    if len(shown) > MAX_NAME_CHARS:
        shown = shown[: MAX_NAME_CHARS - 1].rstrip() + "…"
    return shown


_SRT_MARKUP = str.maketrans({"<": "‹", ">": "›", "{": "｛", "}": "｝"})


def srt_text(text: str) -> str:
    """SRT has no escapes: neutralise what breaks parsers or renders as markup or layout."""
    return one_line(text).replace("-->", "→").translate(_SRT_MARKUP)


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
    """SubRip; the speaker as a ``Name: `` prefix on the first line of each cue. A cue with
    no text left once escaped is left out (an empty cue would end the block early)."""
    blocks = []
    for cue in cues:
        lines = [t for t in (srt_text(line) for line in cue.lines) if t]
        if not lines:
            continue
        if cue.speaker and srt_name(cue.speaker):
            lines[0] = f"{srt_name(cue.speaker)}: {lines[0]}"
        blocks.append(
            f"{len(blocks) + 1}\n{timestamp(cue.start_s, ',')} --> {timestamp(cue.end_s, ',')}\n" + "\n".join(lines)
        )
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT; the speaker as the standard voice span ``<v Name>`` on each cue."""
    out = ["WEBVTT", ""]
    n = 0
    for cue in cues:
        lines = [t for t in (vtt_text(line) for line in cue.lines) if t]
        if not lines:
            continue
        n += 1
        if cue.speaker and vtt_text(cue.speaker):
            lines[0] = f"<v {vtt_text(cue.speaker)}>{lines[0]}"
        out += [str(n), f"{timestamp(cue.start_s, '.')} --> {timestamp(cue.end_s, '.')}", *lines, ""]
    return "\n".join(out)

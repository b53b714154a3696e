"""Parse exports back with the `srt` and `webvtt-py` packages and check the cue rules:
the layout rules on the file alone (:func:`check_srt`, :func:`check_vtt`), the timing and
reading rules against the words the cues show (:func:`check_cue_timing`)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import srt
import webvtt

from opentranscribe_pipeline.deliver.subtitles import (
    MAX_CPS,
    MAX_CUE_S,
    MAX_LINE_CHARS,
    MAX_LINES,
    MIN_CUE_S,
    START_SLACK_S,
    TAIL_S,
    TimedWord,
    one_line,
    prefix_budget,
)

TOL = 0.0015  # timestamps are written in whole milliseconds


def parse_srt(text: str) -> list[srt.Subtitle]:
    return list(srt.parse(text))


def parse_vtt(text: str) -> list:
    return list(webvtt.from_buffer(io.StringIO(text)))


def vtt_seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_srt(text: str, names: set[str] | None = None) -> list[str]:
    """Every cue valid, never overlapping, within the layout rules and at most MAX_CUE_S
    long (the reading rule depends on the words' times: :func:`check_cue_timing`); returns
    the words of the cues (names removed)."""
    subs = parse_srt(text)
    words: list[str] = []
    prev_end = 0.0
    for sub in subs:
        start, end = sub.start.total_seconds(), sub.end.total_seconds()
        assert start >= prev_end - TOL, f"cue {sub.index} overlaps the previous one"
        assert 0 <= end - start <= MAX_CUE_S + TOL, (sub.index, end - start)
        lines = sub.content.split("\n")
        assert 1 <= len(lines) <= MAX_LINES, lines
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines), lines
        content = sub.content
        if names is not None:
            m = re.match(r"^(.+?): ", content)
            assert m and m.group(1) in names, (content, names)
            content = content[m.end() :]
        words += content.split()
        prev_end = end
    return words


def check_vtt(text: str, names: set[str] | None = None) -> list[str]:
    """As check_srt for WebVTT; the speaker must be a `<v Name>` voice span."""
    cues = parse_vtt(text)
    words: list[str] = []
    prev_end = 0.0
    for cue in cues:
        start, end = vtt_seconds(cue.start), vtt_seconds(cue.end)
        assert start >= prev_end - TOL
        assert 0 <= end - start <= MAX_CUE_S + TOL
        raw_lines = cue.raw_text.split("\n")
        assert 1 <= len(raw_lines) <= MAX_LINES
        plain = re.sub(r"^<v [^>]*>", "", cue.raw_text)
        assert all(len(line) <= MAX_LINE_CHARS for line in plain.split("\n"))
        if names is not None:
            m = re.match(r"^<v ([^>]*)>", cue.raw_text)
            assert m and m.group(1) in names, (cue.raw_text, names)
        words += plain.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").split()
        prev_end = end
    return words


@dataclass(frozen=True)
class ShownCue:
    """A cue as a viewer sees it (from an export or a Cue) and the times of the words it shows."""

    start_s: float
    end_s: float
    chars: int  # characters read: lines, line breaks and the ``Name: `` prefix
    words: list[tuple[float, float]]  # (start_s, end_s) of each word (piece) shown


def srt_shown(text: str) -> list[tuple[float, float, int, list[str]]]:
    """(start, end, characters read, lines without the name prefix) of each SRT cue."""
    out = []
    for sub in parse_srt(text):
        lines = sub.content.split("\n")
        chars = sum(len(line) for line in lines) + len(lines) - 1
        out.append((sub.start.total_seconds(), sub.end.total_seconds(), chars, lines))
    return out


def check_cue_timing(cues: list[ShownCue], media_end_s: float | None = None) -> dict:
    """The timing rule, against the words each cue shows: a cue starts within START_SLACK_S of
    its first word (and before its words are over), ends at most TAIL_S after its last
    word, never after the next cue's start or the media's end; it is on screen at most
    MAX_CUE_S. The reading rule (MIN_CUE_S, MAX_CPS) holds, or else the cue had no more
    room: it ends as late and starts as early as the timing rule lets it.

    Returns the lags (cue start - first word start, cue end - last word end) and how many
    cues had the reading rule relaxed."""
    end_of_media = float("inf") if media_end_s is None else media_end_s
    start_lags, end_lags, relaxed = [], [], 0
    for i, cue in enumerate(cues):
        assert cue.words, f"cue {i} shows no word"
        first = min(s for s, _ in cue.words)
        last = max(e for _, e in cue.words)
        first = min(first, end_of_media)
        last = min(last, end_of_media)
        nxt = cues[i + 1].start_s if i + 1 < len(cues) else float("inf")
        prev = cues[i - 1].end_s if i else 0.0
        where = (i, cue.start_s, cue.end_s, first, last)
        assert cue.start_s >= -TOL and cue.end_s >= cue.start_s - TOL, where
        assert abs(cue.start_s - first) <= START_SLACK_S + TOL, ("cue start too far from its first word", where)
        assert cue.start_s <= last + TOL, ("cue starts after its words are over", where)
        assert cue.end_s <= last + TAIL_S + TOL, ("cue ends too long after its last word", where)
        assert cue.end_s <= nxt + TOL, ("cues overlap", where)
        assert cue.end_s <= end_of_media + TOL, ("cue past the end of the media", where)
        shown = cue.end_s - cue.start_s
        assert shown <= MAX_CUE_S + TOL, where
        need = min(MAX_CUE_S, max(MIN_CUE_S, cue.chars / MAX_CPS))
        if shown < need - TOL:
            relaxed += 1
            latest = min(last + TAIL_S, nxt, cue.start_s + MAX_CUE_S, end_of_media)
            earliest = max(first - START_SLACK_S, prev, 0.0)
            assert cue.end_s >= latest - TOL, ("reading rule relaxed although the cue could end later", where, need)
            assert cue.start_s <= earliest + TOL, ("reading rule relaxed although the cue could start earlier", where)
        start_lags.append(cue.start_s - first)
        end_lags.append(cue.end_s - last)
    return {"start_lags": start_lags, "end_lags": end_lags, "relaxed": relaxed, "n": len(cues)}


def pieces(words: list[TimedWord]) -> list[TimedWord]:
    """The words as cues show them: text on one line, split at spaces, a word wider than the
    first line after its speaker's name cut into pieces of that width, the pieces sharing the
    word's time equally; in time order."""
    out = []
    for w in words:
        text = one_line(w.text)
        width = prefix_budget(w.speaker)
        parts = [token[i : i + width] for token in text.split(" ") if token for i in range(0, len(token), width)]
        span = (w.end_s - w.start_s) / max(1, len(parts))
        out += [TimedWord(p, w.start_s + i * span, w.start_s + (i + 1) * span, w.speaker) for i, p in enumerate(parts)]
    return sorted(out, key=lambda w: (w.start_s, w.end_s))


def words_of_cues(
    tokens_per_cue: list[list[str]], words: list[TimedWord], shown_as=lambda text: text
) -> list[list[TimedWord]]:
    """Which words (pieces) each cue shows, consumed in order: fails if a word is lost,
    changed or moved (``shown_as``: a piece's text as the format shows it, e.g. escaped)."""
    shown = pieces(words)
    out, k = [], 0
    for n, tokens in enumerate(tokens_per_cue):
        expected = [shown_as(p.text) for p in shown[k : k + len(tokens)]]
        assert expected == tokens, ("words lost, changed or reordered", n, tokens, expected)
        out.append(shown[k : k + len(tokens)])
        k += len(tokens)
    assert k == len(shown), f"{len(shown) - k} words missing from the cues"
    return out

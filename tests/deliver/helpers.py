"""Parse exports back with the `srt` and `webvtt-py` packages and check the cue rules."""

from __future__ import annotations

import io
import re

import srt
import webvtt

from opentranscribe_pipeline.deliver.subtitles import MAX_CPS, MAX_CUE_S, MAX_LINE_CHARS, MAX_LINES, MIN_CUE_S

TOL = 0.0015  # timestamps are written in whole milliseconds


def parse_srt(text: str) -> list[srt.Subtitle]:
    return list(srt.parse(text))


def parse_vtt(text: str) -> list:
    return list(webvtt.from_buffer(io.StringIO(text)))


def vtt_seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_srt(text: str, names: set[str] | None = None) -> list[str]:
    """Every cue valid and within the rules; returns the words of the cues (names removed)."""
    subs = parse_srt(text)
    words: list[str] = []
    prev_end = 0.0
    for sub in subs:
        start, end = sub.start.total_seconds(), sub.end.total_seconds()
        assert start >= prev_end - TOL, f"cue {sub.index} overlaps the previous one"
        assert MIN_CUE_S - TOL <= end - start <= MAX_CUE_S + TOL, (sub.index, end - start)
        lines = sub.content.split("\n")
        assert 1 <= len(lines) <= MAX_LINES, lines
        assert all(len(line) <= MAX_LINE_CHARS for line in lines), lines
        chars = sum(len(line) for line in lines) + len(lines) - 1
        assert chars / (end - start) <= MAX_CPS + 0.05, (sub.index, chars, end - start)
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
        assert MIN_CUE_S - TOL <= end - start <= MAX_CUE_S + TOL
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

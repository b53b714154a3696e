"""Subtitle cues (``deliver/subtitles.py:build_cues``) on generated word timings: the cue
rules of the module docstring. ``deliver/subtitles.py`` belongs to issue 29 (subtitle
drift): rules that fail on the current code are strict xfails with a falsifying example."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.deliver.subtitles import (
    MAX_CPS,
    MAX_CUE_S,
    MAX_GAP_S,
    MAX_LINE_CHARS,
    MAX_LINES,
    MIN_CUE_S,
    TimedWord,
    build_cues,
    ends_sentence,
    shown_chars,
    to_srt,
)

from .strategies import secs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 2e-3  # cue times are rounded to the millisecond
NAMES = ["SPEAKER_00", "SPEAKER_01", "Ada", "Dr. Maximiliane Oberholzer-Wittgenstein von Rheinfelden", None]
TEXTS = [
    "so",
    "well",
    "the",
    "yes.",
    "Why?",
    "really…",
    "interesting",
    "“quoted.”",
    "antidisestablishmentarianism",
    "x" * 45,
    "y" * 90,
    "了",
    "a",
]


@st.composite
def spoken_words(draw, max_words: int = 40) -> list[TimedWord]:
    """Words one after another (pauses under, at and over MAX_GAP_S; fast and zero-length
    words), by one or more speakers; sometimes two speakers' words overlap in time."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    out, t = [], draw(st.integers(0, 640))
    for _ in range(draw(st.integers(0, max_words))):
        t += draw(st.one_of(st.integers(-32, -1), st.just(0), st.integers(1, 95), st.just(96), st.integers(97, 400)))
        t = max(t, 0)
        length = draw(st.one_of(st.just(0), st.integers(1, 16), st.integers(17, 128)))
        out.append(TimedWord(draw(st.sampled_from(TEXTS)), secs(t), secs(t + length), draw(st.sampled_from(names))))
        t += length
    return out


def _pieces(words: list[TimedWord]) -> list[TimedWord]:
    """The words as the cues must show them: wider than a line cut into pieces of a line,
    in time order."""
    out = []
    for w in words:
        parts = [w.text[i : i + MAX_LINE_CHARS] for i in range(0, len(w.text), MAX_LINE_CHARS)]
        span = (w.end_s - w.start_s) / len(parts)
        out += [TimedWord(p, w.start_s + i * span, w.start_s + (i + 1) * span, w.speaker) for i, p in enumerate(parts)]
    return sorted(out, key=lambda w: (w.start_s, w.end_s))


def _words_of_cues(words: list[TimedWord], cues) -> list[list[TimedWord]]:
    """Which words each cue shows (consumed in order; fails if words are lost or reordered)."""
    pieces = _pieces(words)
    out, k = [], 0
    for cue in cues:
        tokens = " ".join(cue.lines).split(" ")
        assert [p.text for p in pieces[k : k + len(tokens)]] == tokens, "words lost, changed or reordered"
        out.append(pieces[k : k + len(tokens)])
        k += len(tokens)
    assert k == len(pieces), "words missing from the cues"
    return out


@SETTINGS
@given(spoken_words())
def test_cues_keep_the_words_and_cut_where_the_docstring_says(words):
    """Every word once, in time order; a new cue at every speaker change, after every
    sentence end and across pauses of MAX_GAP_S or more."""
    cues = build_cues(words)
    for cue, mine in zip(cues, _words_of_cues(words, cues)):
        assert {w.speaker for w in mine} == {cue.speaker}, "two speakers in one cue"
        for a, b in zip(mine, mine[1:]):
            assert not ends_sentence(a.text), "a sentence end inside a cue"
            assert b.start_s - a.end_s < MAX_GAP_S, "a long pause inside a cue"


@SETTINGS
@given(spoken_words())
def test_cue_lines_and_reading_speed(words):
    """At most MAX_LINES lines of at most MAX_LINE_CHARS; between MIN_CUE_S and MAX_CUE_S on
    screen; at most MAX_CPS characters (the ``Name: `` prefix included) per second."""
    for cue in build_cues(words):
        assert 1 <= len(cue.lines) <= MAX_LINES
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in cue.lines)
        d = cue.end_s - cue.start_s
        assert MIN_CUE_S - EPS <= d <= MAX_CUE_S + EPS
        assert shown_chars(cue.lines, cue.speaker) <= MAX_CPS * d + 0.05


@SETTINGS
@given(spoken_words())
def test_cues_never_overlap_and_never_start_before_their_words(words):
    cues = build_cues(words)
    for a, b in zip(cues, cues[1:]):
        assert a.end_s <= b.start_s + 1e-9, "cues overlap"
    for cue, mine in zip(cues, _words_of_cues(words, cues)):
        assert cue.start_s >= round(mine[0].start_s, 3) - 1e-9, "a cue pulled before its first word"


@pytest.mark.xfail(
    strict=True, reason="issue 29: the Name: prefix plus a long word (or a long name) passes 42 characters"
)
@SETTINGS
@example([TimedWord("x" * 40, 0.0, 1.0, "SPEAKER_00")])
@given(spoken_words())
def test_srt_lines_with_the_speaker_prefix_fit_the_line_width(words):
    """The docstring's 42 characters per line, as a viewer sees the SRT: ``Name: `` and the
    first line together."""
    srt = to_srt(build_cues(words))
    for block in srt.strip().split("\n\n") if srt.strip() else []:
        for line in block.split("\n")[2:]:
            assert len(line) <= MAX_LINE_CHARS, line


@pytest.mark.xfail(strict=True, reason="issue 29: pushed starts accumulate: a cue can appear after its words are over")
@SETTINGS
@example([TimedWord(t, i * 0.25, i * 0.25 + 0.2, "SPEAKER_00") for i, t in enumerate(["Yes.", "No.", "Why?", "So."])])
@given(spoken_words())
def test_a_cue_is_on_screen_before_its_words_are_over(words):
    """No drift: a cue starts before its last word ends (text read along the voice)."""
    cues = build_cues(words)
    for cue, mine in zip(cues, _words_of_cues(words, cues)):
        assert cue.start_s <= max(w.end_s for w in mine) + EPS, (cue, mine[-1])

"""Subtitle cues (``deliver/subtitles.py:build_cues``) on generated word timings: the cue
rules of the module docstring. Issue 29 (subtitle drift): the timing follows the words for
any word timing, the reading rule gives way only where the cue has no more room; the SRT
``Name: `` prefix fits the line (both were strict xfails before the fix)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.deliver.subtitles import (
    MAX_CUE_S,
    MAX_GAP_S,
    MAX_LINE_CHARS,
    MAX_LINES,
    TimedWord,
    build_cues,
    ends_sentence,
    shown_chars,
    to_srt,
)

from ..deliver.helpers import ShownCue, check_cue_timing, words_of_cues
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


@st.composite
def words_and_media_end(draw) -> tuple[list[TimedWord], float | None]:
    """Spoken words and the media's duration: unknown, right at the last word's end, after
    it, or before it (words past the end of the media, as ASR sometimes gives)."""
    words = draw(spoken_words())
    last = max((round(w.end_s / secs(1)) for w in words), default=0)
    kind = draw(st.sampled_from(["none", "exact", "after", "before"] if last > 1 else ["none", "after"]))
    if kind == "none":
        return words, None
    if kind == "exact":
        return words, secs(last)
    if kind == "before":
        return words, secs(draw(st.integers(1, last - 1)))
    return words, secs(last + draw(st.integers(1, 640)))


def _words_of_cues(words: list[TimedWord], cues) -> list[list[TimedWord]]:
    """Which words (pieces: a word wider than the first line after its speaker's name is cut)
    each cue shows; fails if words are lost, changed or reordered."""
    return words_of_cues([" ".join(cue.lines).split(" ") for cue in cues], words)


def _shown(words: list[TimedWord], cues) -> list[ShownCue]:
    return [
        ShownCue(cue.start_s, cue.end_s, shown_chars(cue.lines, cue.speaker), [(w.start_s, w.end_s) for w in mine])
        for cue, mine in zip(cues, _words_of_cues(words, cues))
    ]


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
@given(words_and_media_end())
def test_cue_lines_and_reading_speed(words_end):
    """At most MAX_LINES lines of at most MAX_LINE_CHARS; at most MAX_CUE_S on screen; at
    least MIN_CUE_S and at most MAX_CPS characters (the ``Name: `` prefix included) per
    second, unless the cue has no more room: it then starts as early and ends as late as
    the timing rule allows (``check_cue_timing``)."""
    words, media_end = words_end
    cues = build_cues(words, media_end_s=media_end)
    for cue in cues:
        assert 1 <= len(cue.lines) <= MAX_LINES
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in cue.lines)
        assert 0 <= cue.end_s - cue.start_s <= MAX_CUE_S + EPS
    check_cue_timing(_shown(words, cues), media_end)


@SETTINGS
@example(([TimedWord("Yes.", 0.0, 0.0, "A"), TimedWord("No.", 0.0, 0.0, "B"), TimedWord("So", 0.0, 0.0, "A")], None))
@example(([TimedWord("word", 9.5, 10.5, "A")], 10.0))
@given(words_and_media_end())
def test_cues_follow_their_words(words_end):
    """The timing rule: a cue starts within START_SLACK_S of its first word, ends at most
    TAIL_S after its last word, never overlaps the next cue nor passes the media's end."""
    words, media_end = words_end
    cues = build_cues(words, media_end_s=media_end)
    for a, b in zip(cues, cues[1:]):
        assert a.end_s <= b.start_s + 1e-9, "cues overlap"
    lags = check_cue_timing(_shown(words, cues), media_end)
    assert lags["n"] == len(cues)


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


@SETTINGS
@example([TimedWord(t, i * 0.25, i * 0.25 + 0.2, "SPEAKER_00") for i, t in enumerate(["Yes.", "No.", "Why?", "So."])])
@given(spoken_words())
def test_a_cue_is_on_screen_before_its_words_are_over(words):
    """No drift: a cue starts before its last word ends (text read along the voice)."""
    cues = build_cues(words)
    for cue, mine in zip(cues, _words_of_cues(words, cues)):
        assert cue.start_s <= max(w.end_s for w in mine) + EPS, (cue, mine[-1])

"""Conversation analytics (``deliver/stats.py``) on generated turns and words: every row
passes the ``speaker_stats`` / ``media_stats`` schemas, and every column means what the
module docstring says, checked against tick-counting oracles (``oracles.py``)."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.deliver.stats import (
    JOIN_PAUSE_S,
    Span,
    conversation_stats,
    join_turns,
    overlap_length,
    union_length,
)
from opentranscribe_pipeline.schemas import MediaStats, SpeakerStats, conform, empty_frame

from .oracles import clip, coverage, merged, other_speech_in, pieces_inside, seconds_covered, ticks
from .strategies import BATCH, MEDIA_A, MEDIA_B, TICK, StatsInput, Timeline, any_timeline, stats_inputs, timelines

MEDIA_IDS = [MEDIA_A, MEDIA_B, "c" * 64]

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 2e-3  # outputs are rounded to 3 decimals
CLOSERS = "\"')]}”’»"


def _horizon(spans, duration_s: float) -> int:
    return max([ticks(duration_s), *(ticks(e) for _, e, _ in spans), 0]) + 1


def _stats(inp: StatsInput):
    return conversation_stats(
        inp.timeline.duration_s,
        [Span(*t) for t in inp.timeline.turns],
        [w[0] for w in inp.words],
        inp.sentences,
        [(w[1], w[2]) for w in inp.words],
        diarized=inp.diarized,
    )


# ----------------------------------------------------------------------------- building blocks
@SETTINGS
@given(any_timeline())
def test_union_and_overlap_length_count_the_seconds(tl):
    """union_length: seconds covered by any span (unsorted, nested, zero-length spans);
    overlap_length: seconds during which two or more *different* speakers speak."""
    h = _horizon(tl.turns, tl.duration_s)
    assert union_length([(s, e) for s, e, _ in tl.turns]) == pytest.approx(
        seconds_covered([(s, e) for s, e, _ in tl.turns], h), abs=1e-6
    )
    per_speaker = [coverage([(s, e) for s, e, x in tl.turns if x == spk], h) > 0 for spk in tl.speakers]
    both = float((sum(c.astype(int) for c in per_speaker) >= 2).sum()) * TICK if per_speaker else 0.0
    assert overlap_length([Span(*t) for t in tl.turns]) == pytest.approx(both, abs=1e-6)


@SETTINGS
@given(any_timeline())
def test_join_turns_joins_exactly_the_pieces_the_docstring_says(tl):
    """Consecutive turns of one speaker are joined when the pause is under JOIN_PAUSE_S and
    nobody else speaks in between -- and only then; a turn of one speaker never overlaps
    another of theirs; joined turns come in time order."""
    turns = tl.turns
    joined = join_turns([Span(*t) for t in turns])
    assert [(j.start_s, j.end_s) for j in joined] == sorted((j.start_s, j.end_s) for j in joined)
    for spk in tl.speakers:
        mine = sorted((j.start_s, j.end_s) for j in joined if j.speaker == spk)
        pieces = [(s, e) for s, e, x in turns if x == spk]
        assert len(mine) <= len(pieces)
        for s, e in pieces:  # every piece lies in exactly one joined turn of its speaker
            assert sum(1 for a, b in mine if a <= s and e <= b) == 1, (s, e, mine)
        for (a1, b1), (a2, b2) in zip(mine, mine[1:]):
            assert b1 < a2, f"{spk}: joined turns {a1}-{b1} and {a2}-{b2} overlap or touch"
            assert a2 - b1 >= JOIN_PAUSE_S or other_speech_in(turns, spk, b1, a2), (
                f"{spk}: {a1}-{b1} and {a2}-{b2} should have been joined (pause {a2 - b1}, nobody in between)"
            )
        for a, b in mine:  # inside a joined turn: only short pauses, nobody else in them
            inside = merged(pieces_inside(turns, spk, a, b))
            assert inside[0][0] == a and inside[-1][1] == b
            for (_, e1), (s2, _) in zip(inside, inside[1:]):
                assert s2 - e1 < JOIN_PAUSE_S, f"{spk}: joined across a pause of {s2 - e1} s"
                assert not other_speech_in(turns, spk, e1, s2), f"{spk}: joined across another speaker's speech"


# ----------------------------------------------------------------------------- speaker rows
PAUSED = StatsInput(  # one speaker, a 0.5 s pause inside one joined turn: 3.5 s of talk, not 4
    Timeline(10.0, [(0.0, 2.0, "SPEAKER_00"), (2.5, 4.0, "SPEAKER_00")], ["SPEAKER_00"]), [], [], True
)
PAST_THE_END = StatsInput(  # a turn past the end of the media: speech_s is the media's 5 s
    Timeline(5.0, [(1.0, 6.0, "SPEAKER_00"), (5.5, 7.0, "SPEAKER_01")], ["SPEAKER_00", "SPEAKER_01"]), [], [], True
)


@SETTINGS
@example(PAUSED)
@example(PAST_THE_END)
@given(stats_inputs())
def test_speaker_stats_mean_what_they_say(inp):
    per, media = _stats(inp)
    tl = inp.timeline
    if not inp.diarized or not tl.turns:
        assert per == []
        return
    turns = clip(tl.turns, tl.duration_s)  # the media's time only
    h = _horizon(turns, tl.duration_s)
    joined = join_turns([Span(*t) for t in turns])
    assert [s.speaker for s in per] == sorted({t[2] for t in tl.turns}), "one row per speaker with turns"
    total_talk = sum(seconds_covered([(s, e) for s, e, x in turns if x == row.speaker], h) for row in per)
    for row in per:
        talk = seconds_covered([(s, e) for s, e, x in turns if x == row.speaker], h)
        mine = [j for j in joined if j.speaker == row.speaker]
        assert row.talk_s == pytest.approx(talk, abs=EPS), "talk_s: union of the speaker's turns within the media"
        assert row.n_turns == len(mine) >= 1
        assert 0 <= row.n_interruptions <= row.n_turns
        # the longest stretch of the speaker's own speech inside one joined turn
        longest = max(seconds_covered(pieces_inside(turns, row.speaker, j.start_s, j.end_s), h) for j in mine)
        assert row.longest_turn_s == pytest.approx(longest, abs=EPS)
        assert row.longest_turn_s <= row.talk_s + 1e-3, "longest turn longer than all the speaker's talk"
        longest_piece = max(e - s for s, e, x in turns if x == row.speaker)
        assert row.longest_turn_s >= longest_piece - EPS
        n_words = sum(1 for w in inp.words if w[0] == row.speaker)
        assert row.n_words == n_words
        expected_wpm = round(n_words / (talk / 60), 2) if talk > 0 else 0.0
        assert row.words_per_minute == pytest.approx(expected_wpm, rel=1e-3, abs=0.02)
        questions = sum(
            1
            for spk, text in inp.sentences
            if spk == row.speaker and text.rstrip().rstrip(CLOSERS).endswith(("?", "？"))
        )
        assert row.n_questions == questions
        share = talk / total_talk if total_talk else 0.0
        assert row.share_of_talk == pytest.approx(share, abs=1e-3)
    if total_talk:
        assert sum(r.share_of_talk for r in per) == pytest.approx(1.0, abs=1e-2)
    if len(per) == 1:
        assert per[0].n_interruptions == 0 and media.speaker_switches == 0


# ----------------------------------------------------------------------------- media rows
@SETTINGS
@example(PAST_THE_END)
@given(stats_inputs())
def test_media_stats_mean_what_they_say(inp):
    per, media = _stats(inp)
    tl = inp.timeline
    dur = tl.duration_s
    assert media.n_words == len(inp.words)
    assert media.diarized == inp.diarized
    if not inp.diarized or not tl.turns:  # speech from the words' spans
        spans = [(min(s, dur), min(e, dur)) for _, s, e in inp.words]
        speech = seconds_covered(spans, _horizon([(s, e, "") for s, e in spans], dur))
        assert (media.n_speakers, media.speaker_switches, media.overlap_s) == (0, 0, 0.0)
    else:
        turns = clip(tl.turns, dur)
        h = _horizon(turns, dur)
        speech = seconds_covered([(s, e) for s, e, _ in turns], h)
        per_speaker = [coverage([(s, e) for s, e, x in turns if x == r.speaker], h) > 0 for r in per]
        overlap = float((sum(c.astype(int) for c in per_speaker) >= 2).sum()) * TICK
        assert media.overlap_s == pytest.approx(overlap, abs=EPS)
        assert media.n_speakers == len({t[2] for t in tl.turns}) == len(per)
        joined = join_turns([Span(*t) for t in turns])
        assert media.speaker_switches == sum(1 for a, b in zip(joined, joined[1:]) if a.speaker != b.speaker)
        assert sum(r.talk_s for r in per) >= media.speech_s + media.overlap_s - EPS * (len(per) + 1)
    assert media.speech_s == pytest.approx(speech, abs=EPS), "speech_s: seconds of the media with speech"
    assert media.speech_s <= dur + 1e-3, "speech past the end of the media"
    assert media.silence_s == pytest.approx(dur - speech, abs=EPS), "silence_s: the rest of the media"
    assert media.overlap_s <= media.speech_s + 1e-3
    expected_wpm = round(len(inp.words) / (speech / 60), 2) if speech > 0 else 0.0
    assert media.words_per_minute == pytest.approx(expected_wpm, rel=1e-3, abs=0.02)


@SETTINGS
@given(stats_inputs(), st.randoms(use_true_random=False))
def test_stats_do_not_depend_on_the_order_of_the_turns(inp, rnd):
    shuffled = list(inp.timeline.turns)
    rnd.shuffle(shuffled)
    other = StatsInput(
        type(inp.timeline)(inp.timeline.duration_s, shuffled, inp.timeline.speakers),
        inp.words,
        inp.sentences,
        inp.diarized,
    )
    assert _stats(other) == _stats(inp)


# ----------------------------------------------------------------------------- the schemas
def stats_tables(inputs: list[StatsInput]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows built as ``assets/stats.py:batch_stats`` builds them, one media item per input."""
    speaker_rows, media_rows = [], []
    for media_id, inp in zip(MEDIA_IDS, inputs):
        per_speaker, med = _stats(inp)
        speaker_rows += [{"batch_id": BATCH, "media_id": media_id, **st.__dict__} for st in per_speaker]
        media_rows.append(
            {"batch_id": BATCH, "media_id": media_id, "duration_s": inp.timeline.duration_s, **med.__dict__}
        )
    speakers = conform(pl.DataFrame(speaker_rows), SpeakerStats) if speaker_rows else empty_frame(SpeakerStats)
    medias = conform(pl.DataFrame(media_rows), MediaStats) if media_rows else empty_frame(MediaStats)
    return speakers.sort("media_id", "speaker"), medias.sort("media_id")


@FEW
@example([PAUSED])
@given(st.lists(stats_inputs(), min_size=1, max_size=3))
def test_stats_rows_pass_the_schemas(inputs):
    """``speaker_stats`` and ``media_stats`` rows validate against the data contract (a
    failing check holds the file back or fails the batch)."""
    speakers, medias = stats_tables(inputs)
    SpeakerStats.validate(speakers, lazy=True)
    MediaStats.validate(medias, lazy=True)
    assert medias.height == len(inputs)
    assert speakers.height == sum(len({t[2] for t in i.timeline.turns}) for i in inputs if i.diarized)


@FEW
@given(timelines(min_turns=1, max_turns=30, n_speakers=1))
def test_one_speaker_talks_all_the_time_there_is_talk(tl):
    per, media = conversation_stats(tl.duration_s, [Span(*t) for t in tl.turns], [], [])
    (row,) = per
    assert row.share_of_talk == (1.0 if row.talk_s > 0 else 0.0)
    assert row.n_interruptions == 0 and media.speaker_switches == 0
    assert row.talk_s == pytest.approx(media.speech_s, abs=EPS) and media.overlap_s == 0.0

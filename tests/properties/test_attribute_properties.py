"""Speaker attribution (``speech/attribute.py``) on generated ASR output and turns: the
``segments`` / ``words`` rows pass their schemas, and the module docstring's four rules hold
(words outside every turn, overlapping and zero-length turns, unsorted rows included)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.schemas import Segments, Words, conform
from opentranscribe_pipeline.speech.attribute import (
    MIN_WORD_S,
    WordSpeaker,
    assign_word_speakers,
    attribute_file,
    smooth_sandwiched,
)
from opentranscribe_pipeline.speech.diarize import Turn

from .oracles import merged
from .strategies import BATCH, MEDIA_A, Timeline, Transcript, any_timeline, asr_frames, timelines, transcripts

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _turns(tl: Timeline) -> list[Turn]:
    return [Turn(*t) for t in tl.turns]


def _widened(start: float, end: float) -> tuple[float, float]:
    mid, half = (start + end) / 2, max((end - start) / 2, MIN_WORD_S / 2)
    return mid - half, mid + half


def _inside(span: tuple[float, float], turns: list[Turn], speaker: str) -> float:
    """Seconds of ``span`` inside the union of ``speaker``'s turns."""
    a, b = span
    return sum(
        max(0.0, min(b, e) - max(a, s))
        for s, e in merged([(t.start_s, t.end_s) for t in turns if t.speaker == speaker])
    )


def _distance(span: tuple[float, float], t: Turn) -> float:
    a, b = span
    return max(t.start_s - b, 0.0) + max(a - t.end_s, 0.0)


def attributed_tables(tr: Transcript, tl: Timeline) -> tuple[pl.DataFrame, pl.DataFrame, list[dict], list[dict]]:
    """``segments`` and ``words`` built as ``assets/attribution.py:attribute_batch`` builds
    them for a diarized file (plus the raw dict rows)."""
    asr_seg, asr_words = asr_frames(MEDIA_A, tr)
    words_rows = [{**w, "key": i} for i, w in enumerate(asr_words.to_dicts())]  # `key`: identity of the word
    seg_rows, word_rows = attribute_file(asr_seg.to_dicts(), words_rows, _turns(tl))
    segments = conform(pl.DataFrame(seg_rows, infer_schema_length=None), Segments) if seg_rows else None
    words = conform(pl.DataFrame(word_rows, infer_schema_length=None), Words) if word_rows else None
    segments = (
        segments.with_columns(batch_id=pl.lit(BATCH)).sort("media_id", "segment_id") if segments is not None else None
    )
    words = (
        words.with_columns(batch_id=pl.lit(BATCH)).sort("media_id", "segment_id", "word_index")
        if words is not None
        else None
    )
    return segments, words, seg_rows, word_rows


# ----------------------------------------------------------------------------- rules 1 and 2
@SETTINGS
@example(  # SPEAKER_00's two turns overlap each other: 0.5 s of the word, not 1.0; SPEAKER_01 holds 0.625 s
    spans=[(32, 64)],
    tl=Timeline(
        2.0,
        [(0.0, 1.0, "SPEAKER_00"), (0.25, 1.0, "SPEAKER_00"), (0.875, 2.0, "SPEAKER_01")],
        ["SPEAKER_00", "SPEAKER_01"],
    ),
)
@given(st.lists(st.tuples(st.integers(0, 64 * 200), st.integers(0, 200)), max_size=40), any_timeline(max_turns=20))
def test_each_word_takes_the_speaker_holding_most_of_it_else_the_nearest(spans, tl):
    """Rule 1: the speaker with the most seconds of the word (each speaker's turns counted
    once where they overlap each other); ``overlap`` = that share of the word. Rule 2: a word
    overlapping no turn takes the nearest turn's speaker, overlap 0. None only without turns."""
    starts = np.array([s / 64 for s, _ in spans], np.float64)
    ends = np.array([(s + n) / 64 for s, n in spans], np.float64)
    turns = _turns(tl)
    got = assign_word_speakers(starts, ends, turns)
    assert len(got) == len(spans)
    if not turns:
        assert all(g == WordSpeaker(None, None) for g in got)
        return
    speakers = sorted({t.speaker for t in turns})
    for s, e, g in zip(starts, ends, got):
        w = _widened(s, e)
        held = {spk: _inside(w, turns, spk) for spk in speakers}
        assert g.speaker in speakers
        assert 0.0 <= g.overlap <= 1.0
        if max(held.values()) > 1e-12:
            assert held[g.speaker] == pytest.approx(max(held.values()), abs=1e-9), (s, e, held, g)
            assert g.overlap == pytest.approx(held[g.speaker] / (w[1] - w[0]), abs=1e-9)
        else:
            nearest = min(_distance(w, t) for t in turns)
            assert min(_distance(w, t) for t in turns if t.speaker == g.speaker) == pytest.approx(nearest, abs=1e-9)
            assert g.overlap == 0.0


# ----------------------------------------------------------------------------- rule 3
@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]),
            st.sampled_from([0.0, 0.2, 0.49, 0.5, 1.0]),
        ),
        max_size=30,
    )
)
def test_weak_sandwiched_words_join_their_neighbours_and_nothing_else_moves(items):
    """Rule 3: a word under half inside its speaker's turns, between two words of one other
    speaker in the same sentence, takes their speaker; no other word changes; afterwards no
    such word is left."""
    seg = np.array(sorted(i[0] for i in items), np.int64)
    assigned = [WordSpeaker(spk, ov) for (_, spk, ov) in items]
    out = smooth_sandwiched(seg, assigned)
    assert len(out) == len(assigned)
    for i, (a, b) in enumerate(zip(assigned, out)):
        if a.speaker != b.speaker:
            assert (a.overlap or 0.0) < 0.5
            assert 0 < i < len(out) - 1 and seg[i - 1] == seg[i] == seg[i + 1]
            assert out[i - 1].speaker == b.speaker == out[i + 1].speaker
    for i in range(1, len(out) - 1):
        weak = (assigned[i].overlap or 0.0) < 0.5
        if weak and seg[i - 1] == seg[i] == seg[i + 1] and out[i - 1].speaker == out[i + 1].speaker:
            assert out[i].speaker == out[i - 1].speaker, f"word {i} left sandwiched"


# ----------------------------------------------------------------------------- rule 4 and the rows
@SETTINGS
@given(transcripts(), any_timeline(max_turns=20))
def test_attributed_rows_keep_every_word_and_split_segments_at_speaker_changes(tr, tl):
    _, _, segs, words = attributed_tables(tr, tl)
    turns = _turns(tl)
    labels = {t.speaker for t in turns}
    # every word exactly once, nothing invented
    assert sorted(w["key"] for w in words) == list(range(len(tr.words)))
    assert [s["segment_id"] for s in segs] == list(range(len(segs)))
    by_seg: dict[int, list[dict]] = {}
    for w in sorted(words, key=lambda w: (w["segment_id"], w["word_index"])):
        by_seg.setdefault(w["segment_id"], []).append(w)
    origin = {}  # output segment -> input segment it was cut from
    for s in segs:
        members = by_seg.get(s["segment_id"], [])
        assert [w["word_index"] for w in members] == list(range(len(members)))
        assert (s["speaker"] is None) == (not turns) and (s["speaker"] is None or s["speaker"] in labels)
        assert all(w["speaker"] == s["speaker"] for w in members), "a segment has exactly one speaker"
        assert s["start_s"] <= s["end_s"]
        for w in members:
            assert s["start_s"] <= w["start_s"] and w["end_s"] <= s["end_s"], "a word outside its segment"
        srcs = {w["key"] for w in members}
        originals = {tr.words[k]["segment_id"] for k in srcs}
        assert len(originals) <= 1, "a segment made of words of two sentences"
        origin[s["segment_id"]] = originals.pop() if originals else None
    # pieces of one sentence are consecutive, differ in speaker from their neighbour piece
    # and keep the sentence's outer bounds
    src_by_id = {s["segment_id"]: s for s in tr.segments}
    for a, b in zip(segs, segs[1:]):
        oa, ob = origin[a["segment_id"]], origin[b["segment_id"]]
        if oa is not None and oa == ob:
            assert a["speaker"] != b["speaker"], "a sentence split where the speaker did not change"
    for src_id, src in src_by_id.items():
        pieces = [s for s in segs if origin[s["segment_id"]] == src_id]
        if pieces:
            assert pieces[0]["start_s"] == src["start_s"] and pieces[-1]["end_s"] == max(
                src["end_s"], pieces[-1]["start_s"]
            )
            if len(pieces) == 1:
                assert pieces[0]["text"] == src["text"]
    assert len(segs) >= len(tr.segments)
    assert [s["start_s"] for s in segs] == sorted(s["start_s"] for s in segs)


def _word(seg: int, k: int, start: float, end: float) -> dict:
    return {
        "segment_id": seg,
        "word_index": k,
        "word": f"w{k}",
        "start_s": start,
        "end_s": end,
        "score": None,
        "timing_source": "alignment",
    }


@SETTINGS
@example(  # the middle word, weakly SPEAKER_01's, moves to SPEAKER_00 by rule 3: none of it is in their turns
    tr=Transcript(
        [{"segment_id": 0, "start_s": 0.0, "end_s": 4.0, "text": "w0 w1 w2", "language": "en", "avg_logprob": -0.2}],
        [_word(0, 0, 0.25, 0.75), _word(0, 1, 1.25, 2.25), _word(0, 2, 3.25, 3.75)],
    ),
    tl=Timeline(
        4.0,
        [(0.0, 1.0, "SPEAKER_00"), (1.5, 1.75, "SPEAKER_01"), (3.0, 4.0, "SPEAKER_00")],
        ["SPEAKER_00", "SPEAKER_01"],
    ),
)
@given(transcripts(), any_timeline(max_turns=20))
def test_speaker_overlap_is_the_share_of_the_word_inside_its_speakers_turns(tr, tl):
    """The ``words.speaker_overlap`` column as the schema defines it: seconds of the word
    inside a turn of its (final) speaker over the word's length -- also after rule 3 moved it."""
    _, _, _, words = attributed_tables(tr, tl)
    turns = _turns(tl)
    for w in words:
        if not turns:
            assert w["speaker"] is None and w["speaker_overlap"] is None
            continue
        span = _widened(w["start_s"], w["end_s"])
        share = _inside(span, turns, w["speaker"]) / (span[1] - span[0])
        assert w["speaker_overlap"] == pytest.approx(share, abs=1e-9), (w, share)


@FEW
@given(transcripts(), st.one_of(timelines(max_turns=20), st.just(Timeline(10.0, [], []))))
def test_attributed_rows_pass_the_schemas(tr, tl):
    segments, words, _, _ = attributed_tables(tr, tl)
    if segments is not None:
        Segments.validate(segments, lazy=True)
    if words is not None:
        Words.validate(words, lazy=True)
        if tl.turns:
            assert words["speaker"].null_count() == 0, "every word of a diarized file has a speaker"

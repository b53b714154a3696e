"""``assets/transcription.transcript_frames`` on generated transcripts: the ``asr_segments`` /
``asr_words`` rows pass their schemas and keep every value the ASR gave, Whisper's no-speech
probability included, which then reaches the ``segments`` rows through speaker attribution."""

from __future__ import annotations

import math

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.assets.transcription import transcript_frames
from opentranscribe_pipeline.schemas import AsrSegments, AsrWords, Segments, conform
from opentranscribe_pipeline.speech.align import TIMING_ALIGNMENT, TIMING_CROSS_ATTENTION, TIMING_INTERPOLATED, Word
from opentranscribe_pipeline.speech.asr import Segment, Transcript
from opentranscribe_pipeline.speech.attribute import attribute_file
from opentranscribe_pipeline.speech.diarize import Turn

from .strategies import BATCH, MEDIA_A, TICK

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCES = st.sampled_from([TIMING_ALIGNMENT, TIMING_CROSS_ATTENTION, TIMING_INTERPOLATED])
PROBABILITY = st.none() | st.floats(0.0, 1.0)


@st.composite
def transcripts(draw):
    cursor, segments = 0, []
    for _ in range(draw(st.integers(0, 5))):
        cursor += draw(st.integers(0, 200))
        start, words = cursor, []
        for _ in range(draw(st.integers(0, 4))):
            cursor += draw(st.integers(0, 40))
            length = draw(st.integers(0, 64))
            score = draw(st.floats(0.0, 1.0) | st.just(math.nan))  # NaN: an interpolated word
            word = draw(st.sampled_from(["the", "market,", "went.", "ja", "好"]))
            words.append(Word(word, cursor * TICK, (cursor + length) * TICK, score, draw(SOURCES)))
            cursor += length
        cursor += draw(st.integers(0, 40))
        text = " ".join(w.word for w in words) or "[music]"
        segments.append(
            Segment(
                start * TICK,
                cursor * TICK,
                text,
                draw(st.none() | st.floats(-3.0, 0.0)),
                no_speech_prob=draw(PROBABILITY),
                words=tuple(words),
            )
        )
    language = draw(st.sampled_from(["en", "de", None]))
    return Transcript(language, None if language is None else 0.9, tuple(segments))


@SETTINGS
@given(transcripts())
def test_asr_rows_pass_their_schemas_and_keep_the_asr_values(tx):
    segments, words = transcript_frames(BATCH, MEDIA_A, tx)
    AsrSegments.validate(segments)
    AsrWords.validate(words)
    assert segments.height == len(tx.segments) and words.height == tx.n_words
    assert segments["no_speech_prob"].to_list() == [s.no_speech_prob for s in tx.segments]
    assert segments["avg_logprob"].to_list() == [s.avg_logprob for s in tx.segments]
    scores = [w.score for s in tx.segments for w in s.words]
    assert words["score"].to_list() == [None if math.isnan(x) else x for x in scores]  # NaN -> null

    # speaker attribution carries the chunk's no-speech probability to every piece of a sentence
    turns = [Turn(0.0, 3.0, "SPEAKER_00"), Turn(3.0, 1e4, "SPEAKER_01")]
    seg_rows, _ = attribute_file(segments.to_dicts(), words.to_dicts(), turns)
    source = [s["no_speech_prob"] for s in segments.to_dicts()]
    assert all(row["no_speech_prob"] in source for row in seg_rows)
    if len(source) == 1:  # every piece of the one sentence
        assert {row["no_speech_prob"] for row in seg_rows} == {source[0]}
    if seg_rows:
        Segments.validate(conform(pl.DataFrame(seg_rows, infer_schema_length=None), Segments))

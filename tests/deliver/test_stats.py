"""Conversation analytics against known ground truth (Dagster-free): the espeak-ng dialogue
with one known interruption (tests/data/translation/truth.json: B starts 0.8 s before A's
second turn ends) and the sample archive's dialogues."""

from __future__ import annotations

import json

import pytest

from opentranscribe_pipeline.deliver.stats import Span, conversation_stats, join_turns, overlap_length

from ..conftest import DATA, TRUTH

OVERLAP = json.loads((DATA / "translation" / "truth.json").read_text())["overlap_en.flac"]


def _spans(turns) -> list[Span]:
    return [Span(t["start_s"], t["end_s"], t["speaker"]) for t in turns]


def test_turns_interruptions_and_overlap_exact_on_the_overlap_fixture():
    turns = OVERLAP["turns"]
    sentences = [(t["speaker"], t["text"]) for t in turns]
    n_words = [t["speaker"] for t in turns for _ in t["text"].split()]
    per, media = conversation_stats(OVERLAP["duration_s"], _spans(turns), n_words, sentences)
    by = {s.speaker: s for s in per}
    assert by["a"].n_turns == 3 and by["b"].n_turns == 2
    assert by["b"].n_interruptions == 1 and by["a"].n_interruptions == 0
    assert by["b"].n_questions == 2 and by["a"].n_questions == 0
    assert media.overlap_s == pytest.approx(0.8, abs=0.002)
    assert media.speaker_switches == 4
    for spk in "ab":
        truth = sum(t["end_s"] - t["start_s"] for t in turns if t["speaker"] == spk)
        assert by[spk].talk_s == pytest.approx(truth, abs=1e-3)
        assert by[spk].longest_turn_s == pytest.approx(
            max(t["end_s"] - t["start_s"] for t in turns if t["speaker"] == spk), abs=1e-3
        )
    assert by["a"].share_of_talk + by["b"].share_of_talk == pytest.approx(1.0, abs=1e-3)
    union = sum(t["end_s"] - t["start_s"] for t in turns) - 0.8
    assert media.speech_s == pytest.approx(union, abs=2e-3)
    assert media.silence_s == pytest.approx(OVERLAP["duration_s"] - union, abs=2e-3)
    assert by["a"].n_words == sum(len(t["text"].split()) for t in turns if t["speaker"] == "a")


def test_sample_archive_truth_has_no_overlap_and_one_turn_per_utterance():
    for name, truth in TRUTH.items():
        spans = _spans(truth["turns"])
        assert overlap_length(spans) == 0.0, name
        assert len(join_turns(spans)) == len(spans), name  # alternating speakers: nothing joined
        per, media = conversation_stats(truth["duration_s"], spans, [], [])
        assert sum(s.n_interruptions for s in per) == 0
        assert media.speaker_switches == len(spans) - 1


def test_pieces_of_one_utterance_join_into_one_turn_and_other_speakers_split_them():
    pieces = [Span(0.0, 1.0, "A"), Span(1.3, 2.0, "A"), Span(2.2, 3.0, "B"), Span(3.1, 4.0, "A")]
    joined = join_turns(pieces)
    assert [(t.speaker, t.start_s, t.end_s) for t in joined] == [("A", 0.0, 2.0), ("B", 2.2, 3.0), ("A", 3.1, 4.0)]


def test_no_diarization_gives_media_row_from_words_only():
    per, media = conversation_stats(10.0, [], [None, None], [], [(1.0, 1.5), (1.4, 2.0)], diarized=False)
    assert per == [] and media.speech_s == pytest.approx(1.0) and not media.diarized and media.n_speakers == 0

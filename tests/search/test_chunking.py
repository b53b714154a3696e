"""Passages: one speaker each, split at sentence ends near the target, one sentence of overlap."""

from opentranscribe_pipeline.search.backends import Hit
from opentranscribe_pipeline.search.chunking import chunk_file, source_digest
from opentranscribe_pipeline.search.ranking import highlight, reciprocal_rank_fusion


def words_of(sentences: list[tuple[str, str]], seconds_per_word: float = 0.5) -> list[dict]:
    """Word rows for (speaker, sentence) pairs, one segment per sentence."""
    rows, t = [], 0.0
    for seg_id, (speaker, sentence) in enumerate(sentences):
        for i, w in enumerate(sentence.split()):
            rows.append(
                {"segment_id": seg_id, "word_index": i, "word": w, "start_s": t, "end_s": t + 0.4, "speaker": speaker}
            )
            t += seconds_per_word
    return rows


def sentence(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n - 1)) + f" {tag}end."


def test_each_passage_has_one_speaker_and_word_times():
    words = words_of([("A", "Hello there."), ("A", "How are you?"), ("B", "Fine thanks."), ("A", "Good.")])
    passages = chunk_file(words, [])
    assert [(p.speaker, p.text) for p in passages] == [
        ("A", "Hello there. How are you?"),
        ("B", "Fine thanks."),
        ("A", "Good."),
    ]
    assert passages[0].start_s == 0.0 and passages[0].end_s == words[4]["end_s"]
    assert [p.chunk_index for p in passages] == [0, 1, 2]


def test_long_turn_splits_at_sentence_ends_with_one_sentence_of_overlap():
    sents = [("A", sentence(60, f"s{k}_")) for k in range(8)]  # 480 words, one speaker
    passages = chunk_file(words_of(sents), [], target_words=200)
    assert len(passages) >= 3
    for p in passages:
        assert p.text.endswith("end."), "every passage ends at a sentence end"
        assert p.n_words <= 200 + 60
    for a, b in zip(passages, passages[1:]):
        last_sentence_of_a = a.text.split("end.")[-2].strip() + "end."
        assert b.text.startswith(last_sentence_of_a.split()[0]), "the next passage repeats the last sentence"
        assert b.start_s < a.end_s
    covered = " ".join(p.text for p in passages)
    for k in range(8):
        assert f"s{k}_end." in covered


def test_unpunctuated_monologue_is_cut_and_segments_stand_in_for_missing_words():
    words = [
        {"segment_id": 0, "word_index": i, "word": f"w{i}", "start_s": i * 0.3, "end_s": i * 0.3 + 0.2, "speaker": None}
        for i in range(1000)
    ]
    passages = chunk_file(words, [], target_words=200)
    assert all(p.n_words <= 400 for p in passages) and sum(p.n_words for p in passages) >= 1000
    segs = [{"segment_id": 0, "start_s": 1.0, "end_s": 2.0, "text": " Only segments here. ", "speaker": "SPEAKER_00"}]
    (only,) = chunk_file([], segs)
    assert (only.text, only.start_s, only.end_s, only.speaker) == ("Only segments here.", 1.0, 2.0, "SPEAKER_00")
    assert chunk_file([], []) == []


def test_source_digest_changes_with_speakers_and_words():
    words = words_of([("A", "Hello there."), ("B", "Hi.")])
    segs = [{"segment_id": 0, "text": "Hello there.", "language": "en", "speaker": "A"}]
    base = source_digest(words, segs)
    assert source_digest(words, segs) == base
    relabelled = [{**w, "speaker": "C"} if w["speaker"] == "B" else w for w in words]
    assert source_digest(relabelled, segs) != base
    assert source_digest(words[:-1], segs) != base


def test_rrf_rewards_agreement_and_highlight_marks_stems():
    a, b, c = (Hit(i, 0.0, {"id": i}) for i in "abc")
    fused = reciprocal_rank_fusion({"text": [a, b], "semantic": [c, b]}, limit=3)
    assert fused[0].id == "b" and fused[0].ranks == {"text": 2, "semantic": 2}
    assert {h.id for h in fused} == {"a", "b", "c"}
    assert highlight("Heavy rains are expected.", "the rain") == "Heavy <em>rains</em> are expected."
    assert highlight("北京 ñandú", "ñandú") == "北京 <em>ñandú</em>"
    assert highlight("text", "?!* ") == "text"

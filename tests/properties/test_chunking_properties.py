"""Search passages (``search/chunking.py``) on generated words: ``chunks`` rows pass their
schema, and the module docstring's rules hold -- one speaker's turn per passage, cut at
sentence ends near the target, one sentence of overlap, every word found in some passage."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.assets.search import chunk_frame
from opentranscribe_pipeline.schemas import TEXT_EMBEDDING_DIM, Chunks
from opentranscribe_pipeline.search.chunking import SENTENCE_END, chunk_file

from .strategies import BATCH, MEDIA_A, SPEAKERS, ChunkInput, chunk_inputs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLOSERS = "\"'”’)»]"


def chunk_table(passages, language: str | None = "en") -> pl.DataFrame:
    """``chunks`` rows as the asset builds them (``assets/search.py:chunk_frame``), zero vectors
    of the table's width standing in for the text model."""
    vectors = np.zeros((len(passages), TEXT_EMBEDDING_DIM), np.float32)
    return chunk_frame(BATCH, MEDIA_A, language, passages, vectors, "test-model")


def _units(inp: ChunkInput) -> list[dict]:
    """The words in speaking order, blank ones dropped, each marked where a sentence ends
    (an end mark, or the last word of its ASR segment)."""
    ordered = sorted(inp.words, key=lambda w: (w["segment_id"], w["word_index"]))
    kept = [w for w in ordered if w["word"].strip()]
    out = []
    for i, w in enumerate(kept):
        last_of_segment = i + 1 == len(kept) or kept[i + 1]["segment_id"] != w["segment_id"]
        out.append({**w, "ends": last_of_segment or w["word"].rstrip(CLOSERS).endswith(SENTENCE_END)})
    return out


def _turns(units: list[dict]) -> list[list[int]]:
    turns: list[list[int]] = []
    for i, u in enumerate(units):
        if turns and units[turns[-1][-1]]["speaker"] == u["speaker"]:
            turns[-1].append(i)
        else:
            turns.append([i])
    return turns


def _sentences(units: list[dict], turn: list[int], target: int) -> list[list[int]]:
    """The docstring's sentences of one turn: a sentence longer than twice the target is cut
    at the target."""
    raw: list[list[int]] = [[]]
    for i in turn:
        raw[-1].append(i)
        if units[i]["ends"]:
            raw.append([])
    out = []
    for s in (s for s in raw if s):
        out += [s[k : k + target] for k in range(0, len(s), target)] if len(s) > 2 * target else [s]
    return out


UNPUNCTUATED = ChunkInput(  # 7 words without an end mark, target 2: longer than twice the target, cut at 2
    [
        {
            "segment_id": 0,
            "word_index": i,
            "word": f"w{i}",
            "start_s": i * 0.5,
            "end_s": i * 0.5 + 0.25,
            "speaker": "SPEAKER_00",
        }
        for i in range(7)
    ],
    2,
)


@SETTINGS
@example(UNPUNCTUATED)
@given(chunk_inputs())
def test_passages_follow_the_docstring(inp):
    passages = chunk_file(inp.words, [], inp.target_words)
    units = _units(inp)
    index_of = {u["word"].strip(): i for i, u in enumerate(units)}
    target = inp.target_words
    assert [p.chunk_index for p in passages] == list(range(len(passages)))
    runs = []
    for p in passages:
        idx = [index_of[t] for t in p.text.split(" ")]
        assert idx == list(range(idx[0], idx[-1] + 1)), "a passage is a run of consecutive words"
        mine = [units[i] for i in idx]
        assert p.n_words == len(idx) >= 1
        assert {u["speaker"] for u in mine} == {p.speaker}, "one speaker per passage"
        assert p.start_s == min(u["start_s"] for u in mine) and p.end_s == max(u["end_s"] for u in mine)
        runs.append(idx)
    covered = {i for r in runs for i in r}
    assert covered == set(range(len(units))), "every word is in some passage"

    turn_of = {i: k for k, turn in enumerate(_turns(units)) for i in turn}
    sentences = {k: _sentences(units, turn, target) for k, turn in enumerate(_turns(units))}
    sentence_of = {i: (k, j) for k, ss in sentences.items() for j, s in enumerate(ss) for i in s}
    for r in runs:
        assert len({turn_of[i] for i in r}) == 1, "a passage spans two turns"
        k = turn_of[r[0]]
        first, last = sentence_of[r[0]], sentence_of[r[-1]]
        assert sentences[k][first[1]][0] == r[0], "a passage starts inside a sentence"
        assert sentences[k][last[1]][-1] == r[-1], "a passage ends inside a sentence"
    for r, s in zip(runs, runs[1:]):
        if turn_of[r[0]] != turn_of[s[0]]:
            assert s[0] == r[-1] + 1
            continue
        k = turn_of[r[0]]
        last_sentence = sentences[k][sentence_of[r[-1]][1]]
        repeated = [i for i in s if i <= r[-1]]
        assert s[-1] > r[-1], "a passage adds words"
        if len(last_sentence) < target:  # the next passage starts again with the last sentence
            assert repeated == last_sentence, "not one sentence of overlap"
        else:
            assert repeated == [] and s[0] == r[-1] + 1
        # gathered up to the target: the passage stopped because the next sentence did not fit
        next_fresh = sentences[k][sentence_of[s[len(repeated)]][1]]
        assert len(r) + len(next_fresh) > target, "a passage cut before it reached the target"
    for p, r in zip(passages, runs):  # only one sentence may take a passage past the target
        fresh = {sentence_of[i] for i in r} - (
            {sentence_of[r[0]]} if p.chunk_index and runs[p.chunk_index - 1][-1] >= r[0] else set()
        )
        if len(fresh) > 1:
            assert p.n_words <= target, f"{len(fresh)} sentences gathered past the target"


@SETTINGS
@given(chunk_inputs())
def test_chunk_rows_pass_the_schema(inp):
    passages = chunk_file(inp.words, [], inp.target_words)
    if passages:
        Chunks.validate(chunk_table(passages), lazy=True)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([" Hello there. ", "", "  ", "Why?", "no end"]), st.sampled_from([*SPEAKERS[:2], None])
        ),
        max_size=12,
    ),
    st.integers(1, 5),
)
def test_segments_stand_in_for_missing_words(segs, target):
    rows = [
        {"segment_id": i, "start_s": float(i), "end_s": i + 0.5, "text": text, "speaker": spk}
        for i, (text, spk) in enumerate(segs)
    ]
    passages = chunk_file([], rows, target)
    texts = [r["text"].strip() for r in rows if r["text"].strip()]
    assert (passages == []) == (texts == [])
    for p in passages:
        assert p.text and p.start_s <= p.end_s
        assert p.n_words == len(p.text.split()) >= 1, "n_words counts words, also when segments stand in"
    if passages:
        Chunks.validate(chunk_table(passages), lazy=True)

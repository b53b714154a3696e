"""The row-producing functions of ``deliver/summaries.py`` (and ``deliver/llm.py``'s key points)
on generated transcripts: every ``summaries`` row the step would write and every ``topics``
frame pass their schemas; key points are sentences that were said, by their segment's
speaker, inside its time; 3-7 of them wherever there are 3 informative sentences.

The text model here is a hashing embedder (each distinct text a fixed pseudo-random unit
vector): the properties are about the rows, which must hold for any embedding; the real
MiniLM runs in ``test_summary_step.py``."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.deliver import llm
from opentranscribe_pipeline.deliver import summaries as sm
from opentranscribe_pipeline.schemas import Summary, Topic, conform, utc_now

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIA = "a" * 64
WORDS = st.sampled_from(["the", "market", "library", "river", "opens", "on", "Monday.", "why?", "ja", "北京。", ""])


def hashing_encode(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), 16), np.float32)
    for i, t in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).normal(size=16)
        out[i] = v / np.linalg.norm(v)
    return out


@st.composite
def segments(draw) -> list[dict]:
    n = draw(st.integers(0, 12))
    t, out = 0.0, []
    for i in range(n):
        start = t + draw(st.floats(0, 3))
        end = start + draw(st.floats(0, 8))
        t = end
        text = " ".join(draw(st.lists(WORDS, max_size=18)))
        speaker = draw(st.sampled_from(["SPEAKER_00", "SPEAKER_01", "SPEAKER_02", None]))
        out.append({"segment_id": i, "start_s": start, "end_s": end, "text": text, "speaker": speaker})
    return out


def with_words(segs: list[dict]) -> list[dict]:
    """Word rows lined up with each segment's tokens, evenly timed."""
    words = []
    for s in segs:
        tokens = s["text"].split()
        step = (s["end_s"] - s["start_s"]) / max(1, len(tokens))
        words += [
            {"segment_id": s["segment_id"], "word_index": k, "start_s": s["start_s"] + k * step}
            | {"end_s": s["start_s"] + (k + 1) * step}
            for k in range(len(tokens))
        ]
    return words


def state_row(columns: dict, **extra) -> pl.DataFrame:
    row = {
        "batch_id": "b-0000",
        "media_id": MEDIA,
        "status": "ok",
        "error": None,
        "method": "extractive",
        "model": "packaged:all-minilm-l6-v2",
        "prompt_version": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "source_digest": "0" * 16,
        "audio_s": 1.0,
        "elapsed_s": 0.1,
        "model_version": sm.EXTRACTIVE_VERSION,
        "processed_at": utc_now(),
        **columns,
        **extra,
    }
    return conform(pl.DataFrame([row]), Summary)


def inside_a_segment(point: dict, segs: list[dict]) -> bool:
    return any(
        point["text"] in (s["text"] or "")
        and point["speaker"] == s["speaker"]
        and s["start_s"] - 1e-9 <= point["start_s"] <= point["end_s"] <= s["end_s"] + 1e-9
        for s in segs
    )


@SETTINGS
@given(segments(), st.booleans(), st.sampled_from(["en", "de", "zh", None]))
def test_extractive_rows_pass_the_schemas_and_every_point_was_said(segs, timed, language):
    sentences = sm.sentences_from_segments(segs, with_words(segs) if timed else None)
    original = sm.extract(sentences, language, hashing_encode)
    english = sm.extract(sentences, "en", hashing_encode) if language != "en" else original
    row = state_row(sm.summary_columns(original, language, english))
    Summary.validate(row)
    points = row["key_points"][0].to_list()
    assert all(inside_a_segment(p, segs) for p in points), points
    informative = [s for s in sentences if s.informative()]
    assert len(points) <= sm.MAX_POINTS
    assert len(points) >= min(sm.MIN_POINTS, len(informative))
    assert [p["start_s"] for p in points] == sorted(p["start_s"] for p in points)
    if original.summary:
        assert all(p in [s.text for s in sentences] for p in [s.text for s in original.key_points])
    by_language = {language: original.topics} | ({"en": english.topics} if language != "en" else {})
    topics = sm.topic_frame("b-0000", MEDIA, by_language)
    Topic.validate(topics)
    assert topics["topic"].to_list() == [t for ts in by_language.values() for t, _ in ts]


@SETTINGS
@given(st.sampled_from(["failed", "skipped"]), st.text(min_size=1, max_size=40))
def test_failed_and_skipped_rows_pass_the_schema_with_their_reason(status, reason):
    row = state_row({"n_sentences": 0}, status=status, error=reason)
    Summary.validate(row)


@SETTINGS
@given(segments(), st.lists(st.integers(-2, 14), max_size=4))
def test_llm_key_points_take_the_cited_lines_time_and_speaker(segs, cited):
    lines = [
        llm.Line(i, s["start_s"], s["end_s"], s["speaker"], s["text"])
        for i, s in enumerate(sorted(segs, key=lambda s: s["start_s"]))
    ]
    answer = json.dumps({"summary": "x", "key_points": [{"text": "a point", "lines": cited}], "topics": ["t"]})
    points = llm._points(llm.parse_json(answer), {ln.number: ln for ln in lines})
    known = [n for n in cited if 0 <= n < len(lines)]
    if not known:
        assert points == []
        return
    [p] = points
    assert p["start_s"] == min(lines[n].start_s for n in known) and p["end_s"] == max(lines[n].end_s for n in known)
    assert p["speaker"] in {lines[n].speaker for n in known}
    row = state_row(
        {"summary": "x", "key_points": [{k: v for k, v in p.items() if k != "lines"}], "topics": ["t"]},
        method="llm",
        prompt_version="prompt-0123456789ab",
        n_sentences=len(lines),
    )
    Summary.validate(row)

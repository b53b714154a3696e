"""What a recording is about, offline: an extractive summary, key points and topics.

Dagster-free (``assets/summaries.py`` is the step). The text model is the packaged MiniLM the
search step uses (``search/embedding.py``'s :class:`TextEmbedder`, loaded once per run and
handed in as ``encode``), so nothing else is downloaded or loaded.

1. **sentences** (:func:`sentences_from_segments`): each segment's text cut at sentence ends,
   each sentence with its speaker and its time (from the segment's words where they line up
   with the text, else in proportion to the characters);
2. **centrality**: the informative sentences (4 words or more; 12 characters in scripts
   without spaces) are embedded; the transcript's vector is their length-weighted centroid;
   a sentence's centrality is its cosine similarity to it;
3. **key points** (:func:`select_key_points`): 3-7 sentences (fewer only when the transcript
   has fewer), picked greedily by centrality minus redundancy (maximal marginal relevance)
   with two spreads: over time (the recording cut into as many sections as key points; a
   second pick in a section costs) and over speakers (a speaker past their share of the
   talk costs), shown in time order;
4. **summary**: the most central key points (up to 3, at most ``MAX_SUMMARY_WORDS``), in
   time order; every sentence of it was said;
5. **topics**: keyphrases of the same text (``deliver/keyphrases.py``).

The same is done in the media's language (``segments``) and in English (``segments_en``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..schemas import Topic, conform
from .keyphrases import Encode, keyphrases

EXTRACTIVE_VERSION = "extractive/1"  # bump when a change here changes what is written
MIN_POINTS, MAX_POINTS = 3, 7
SUMMARY_SENTENCES = 3
MAX_SUMMARY_WORDS = 80
MIN_WORDS = 4
MIN_CHARS_UNSPACED = 12
TOP_TOPICS = 8

_SPLIT = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")


@dataclass(frozen=True)
class Sentence:
    text: str
    start_s: float
    end_s: float
    speaker: str | None
    segment_id: int

    @property
    def n_words(self) -> int:
        return len(self.text.split())

    def informative(self) -> bool:
        if _UNSPACED.search(self.text):
            return len(self.text.strip()) >= MIN_CHARS_UNSPACED
        return self.n_words >= MIN_WORDS


@dataclass
class Extract:
    """One language's summary of one transcript."""

    summary: str | None
    key_points: list[Sentence]
    topics: list[tuple[str, float]]
    n_sentences: int
    vector: np.ndarray | None = field(default=None, repr=False)  # the transcript's unit embedding

    def key_point_dicts(self) -> list[dict]:
        return [{"text": s.text, "start_s": s.start_s, "end_s": s.end_s, "speaker": s.speaker} for s in self.key_points]


def _pieces(text: str) -> list[tuple[str, int, int]]:
    """The sentences of ``text`` with their character spans."""
    out, pos = [], 0
    for piece in _SPLIT.split(text):
        start = text.find(piece, pos) if piece else pos
        pos = start + len(piece)
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((piece.strip(), start + lead, start + lead + len(piece.strip())))
    return out


def sentences_from_segments(segments: Sequence[dict], words: Sequence[dict] | None = None) -> list[Sentence]:
    """The transcript's sentences in time order. ``segments``: rows with ``segment_id``,
    ``start_s``, ``end_s``, ``text``, ``speaker``; ``words``: rows with ``segment_id``,
    ``word_index``, ``start_s``, ``end_s`` (optional: times from them where the segment's
    words are its whitespace tokens one for one)."""
    by_segment: dict[int, list[dict]] = {}
    for w in words or ():
        by_segment.setdefault(int(w["segment_id"]), []).append(w)
    out = []
    for seg in sorted(segments, key=lambda s: (float(s["start_s"]), int(s["segment_id"]))):
        text = (seg.get("text") or "").strip()
        if not text:
            continue
        sid, t0, t1 = int(seg["segment_id"]), float(seg["start_s"]), float(seg["end_s"])
        pieces = _pieces(text)
        seg_words = sorted(by_segment.get(sid, []), key=lambda w: int(w["word_index"]))
        tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        timed = len(seg_words) == len(tokens) and len(tokens) > 0
        for piece, c0, c1 in pieces:
            if timed:
                inside = [i for i, (a, b) in enumerate(tokens) if a < c1 and b > c0]
                start = float(seg_words[inside[0]]["start_s"]) if inside else t0
                end = float(seg_words[inside[-1]]["end_s"]) if inside else t1
            else:
                span = t1 - t0
                start, end = t0 + span * c0 / len(text), t0 + span * c1 / len(text)
            start, end = max(t0, min(start, t1)), max(t0, min(end, t1))
            out.append(Sentence(piece, start, max(start, end), seg.get("speaker"), sid))
    return out


def n_key_points(n_candidates: int) -> int:
    """3-7, growing with the log of the number of candidate sentences; never more than there are."""
    wanted = round(1.5 * math.log2(n_candidates + 1))
    return min(n_candidates, max(MIN_POINTS, min(MAX_POINTS, wanted)))


def select_key_points(
    cands: Sequence[Sentence],
    vectors: np.ndarray,
    centrality: np.ndarray,
    k: int,
    *,
    redundancy: float = 0.3,
    section_cost: float = 0.15,
    speaker_cost: float = 0.1,
) -> list[int]:
    """Indices of ``k`` candidates (pick order), spread over the recording and its speakers."""
    if k <= 0 or not cands:
        return []
    t0 = min(s.start_s for s in cands)
    t1 = max(s.end_s for s in cands)
    width = max(1e-9, (t1 - t0) / k)
    section = [min(k - 1, int((s.start_s - t0) / width)) for s in cands]
    talk: dict[str | None, float] = {}
    for s in cands:
        talk[s.speaker] = talk.get(s.speaker, 0.0) + max(1, s.n_words)
    total = sum(talk.values())
    share = {spk: v / total for spk, v in talk.items()}
    picked: list[int] = []
    taken_sections: set[int] = set()
    picks_of: dict[str | None, int] = {}
    sims = vectors @ vectors.T
    while len(picked) < k:
        best, best_score = -1, -np.inf
        for i in range(len(cands)):
            if i in picked:
                continue
            score = float(centrality[i])
            if picked:
                score -= redundancy * float(sims[i, picked].max())
            if section[i] in taken_sections:
                score -= section_cost
            spk = cands[i].speaker
            if picks_of.get(spk, 0) + 1 > k * share[spk] + 0.5:
                score -= speaker_cost
            if score > best_score:
                best, best_score = i, score
        picked.append(best)
        taken_sections.add(section[best])
        picks_of[cands[best].speaker] = picks_of.get(cands[best].speaker, 0) + 1
    return picked


def extract(
    sentences: Sequence[Sentence], language: str | None, encode: Encode, *, top_topics: int = TOP_TOPICS
) -> Extract:
    """The summary, key points and topics of one transcript's sentences."""
    if not sentences:
        return Extract(None, [], [], 0)
    cands = [s for s in sentences if s.informative()] or list(sentences)
    vectors = encode([s.text for s in cands])
    weights = np.array([max(1, s.n_words) for s in cands], np.float32)
    centroid = (vectors * weights[:, None]).sum(axis=0)
    centroid /= max(1e-9, float(np.linalg.norm(centroid)))
    centrality = vectors @ centroid
    picked = select_key_points(cands, vectors, centrality, n_key_points(len(cands)))
    by_centrality = sorted(picked, key=lambda i: -centrality[i])
    chosen, words = [], 0
    for i in by_centrality[:SUMMARY_SENTENCES]:
        if chosen and words + cands[i].n_words > MAX_SUMMARY_WORDS:
            break
        chosen.append(i)
        words += cands[i].n_words
    summary = " ".join(cands[i].text for i in sorted(chosen, key=lambda i: (cands[i].start_s, i)))
    points = sorted((cands[i] for i in picked), key=lambda s: (s.start_s, s.segment_id))
    topics = keyphrases([s.text for s in sentences], language, encode, centroid, top_n=top_topics)
    return Extract(summary, points, topics, len(sentences), centroid)


# -- rows -----------------------------------------------------------------------------------------
def source_digest(segments: Sequence[dict], english: Sequence[dict] | None) -> str:
    """Fingerprint of what a file's summary is made from (its segments and English segments)."""
    cols = ("segment_id", "start_s", "end_s", "speaker", "text")
    rows = sorted(tuple(r.get(c) for c in cols) for r in segments)
    en = sorted(tuple(r.get(c) for c in cols) for r in english) if english is not None else None
    return hashlib.sha256(repr((rows, en)).encode()).hexdigest()[:16]


def summary_columns(original: Extract, language: str | None, english: Extract | None) -> dict:
    """The ``summaries`` columns a summary fills (state columns come from the step)."""
    return {
        "language": language,
        "summary": original.summary,
        "key_points": original.key_point_dicts(),
        "topics": [t for t, _ in original.topics],
        "summary_en": english.summary if english is not None else None,
        "key_points_en": english.key_point_dicts() if english is not None else None,
        "topics_en": [t for t, _ in english.topics] if english is not None else None,
        "n_sentences": original.n_sentences,
    }


def topic_frame(
    batch_id: str, media_id: str, by_language: dict[str | None, Sequence[tuple[str, float]]]
) -> pl.DataFrame:
    """``topics`` rows: one per (language, rank)."""
    rows = [
        {
            "batch_id": batch_id,
            "media_id": media_id,
            "language": lang,
            "rank": rank,
            "topic": topic,
            "weight": min(1.0, max(0.0, float(weight))),
        }
        for lang, topics in by_language.items()
        for rank, (topic, weight) in enumerate(topics)
        if topic
    ]
    schema = {"batch_id": pl.Utf8, "media_id": pl.Utf8, "language": pl.Utf8, "rank": pl.Int32}
    df = pl.DataFrame(
        rows, schema_overrides={**schema, "topic": pl.Utf8, "weight": pl.Float64}, infer_schema_length=None
    )
    return conform(df, Topic) if rows else conform(pl.DataFrame(), Topic).clear()


def is_english(language: str | None) -> bool:
    return (language or "").lower().startswith("en")

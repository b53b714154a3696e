"""Passages for search: parts of one speaker's turn, split at sentence ends.

A *turn* is a run of consecutive words with the same file-local speaker. Inside a turn the
words are cut into sentences (a word ending in ``.``, ``?``, ``!`` or ``…`` ends one, and so
does the last word of an ASR segment; blank words are dropped first); sentences are
gathered into a passage until it reaches ``target_words`` (about 200), then the next
passage starts again with the passage's last sentence (when that is shorter than the
target), so a phrase spanning the cut is found in one piece. A single sentence longer than
twice the target (ASR without punctuation) is cut every ``target_words`` words, so no
passage runs far past what the text model reads (all-MiniLM-L6-v2: 256 word pieces).
Times come from the word times; a file without words falls back to its segments (one
sentence each). ``n_words`` and the target count words, also where a segment stands in.

Pure Python over rows, no model: ``chunk_file`` is what ``assets/search.py`` runs per file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CHUNKER_VERSION = "chunker/2"  # bump when the passages for the same words change
# chunker/2: long sentences cut at the target (was twice it), segment ends behind blank words,
# n_words counts words where segments stand in
SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")


@dataclass(frozen=True)
class Unit:
    """A word (or a whole segment when a file has no words) in speaking order."""

    text: str
    start_s: float
    end_s: float
    speaker: str | None
    ends_sentence: bool


@dataclass(frozen=True)
class Passage:
    chunk_index: int
    start_s: float
    end_s: float
    speaker: str | None
    text: str
    n_words: int


def units_from_rows(words: Sequence[dict], segments: Sequence[dict]) -> list[Unit]:
    """Units of one file: its words (``segment_id, word_index, word, start_s, end_s,
    speaker``), else its segments (``segment_id, start_s, end_s, text, speaker``)."""
    if words:
        ordered = sorted(words, key=lambda w: (w["segment_id"], w["word_index"]))
        kept = [w for w in ordered if (w["word"] or "").strip()]  # a blank word is no word
        out = []
        for i, w in enumerate(kept):
            text = w["word"].strip()
            last_of_segment = i + 1 == len(kept) or kept[i + 1]["segment_id"] != w["segment_id"]
            out.append(
                Unit(text, float(w["start_s"]), float(w["end_s"]), w.get("speaker"), last_of_segment or _ends(text))
            )
        return out
    return [
        Unit(s["text"].strip(), float(s["start_s"]), float(s["end_s"]), s.get("speaker"), True)
        for s in sorted(segments, key=lambda s: (s["start_s"], s["segment_id"]))
        if (s.get("text") or "").strip()
    ]


def _ends(text: str) -> bool:
    return text.rstrip("\"'”’)»]").endswith(SENTENCE_END)


def _turns(units: Iterable[Unit]) -> list[list[Unit]]:
    turns: list[list[Unit]] = []
    for u in units:
        if turns and turns[-1][-1].speaker == u.speaker:
            turns[-1].append(u)
        else:
            turns.append([u])
    return turns


def _words(units: Iterable[Unit]) -> int:
    """Words in ``units`` (a segment standing in for its words counts them)."""
    return sum(len(u.text.split()) or 1 for u in units)


def _sentences(turn: list[Unit], target_words: int) -> list[list[Unit]]:
    """The turn's sentences; one longer than twice the target is cut every ``target_words``."""
    out: list[list[Unit]] = []
    sentence: list[Unit] = []
    for k, u in enumerate(turn):
        sentence.append(u)
        if u.ends_sentence or k + 1 == len(turn):
            if len(sentence) > 2 * target_words:
                out += [sentence[i : i + target_words] for i in range(0, len(sentence), target_words)]
            else:
                out.append(sentence)
            sentence = []
    return out


def chunk_units(units: Sequence[Unit], target_words: int = 200) -> list[Passage]:
    """Passages of one file, numbered from 0 in speaking order."""
    passages: list[Passage] = []

    def emit(sentences: list[list[Unit]]) -> None:
        words = [u for s in sentences for u in s]
        passages.append(
            Passage(
                chunk_index=len(passages),
                start_s=min(u.start_s for u in words),
                end_s=max(u.end_s for u in words),
                speaker=words[0].speaker,
                text=" ".join(u.text for u in words),
                n_words=_words(words),
            )
        )

    for turn in _turns(units):
        current: list[list[Unit]] = []
        count = 0
        fresh = 0  # sentences of `current` not already in the previous passage
        for sentence in _sentences(turn, target_words):
            size = _words(sentence)
            if current and fresh and count + size > target_words:
                emit(current)
                overlap = current[-1]
                n = _words(overlap)
                current, count, fresh = ([overlap], n, 0) if n < target_words else ([], 0, 0)
            current.append(sentence)
            count += size
            fresh += 1
        if current and fresh:
            emit(current)
    return passages


def chunk_file(words: Sequence[dict], segments: Sequence[dict], target_words: int = 200) -> list[Passage]:
    return chunk_units(units_from_rows(words, segments), target_words)


def source_digest(words: Sequence[dict], segments: Sequence[dict]) -> str:
    """Fingerprint of what the passages are made from (words, times, speakers, language): a
    file transcribed or diarized again gets another digest and is re-chunked."""
    h = hashlib.sha256()
    for w in sorted(words, key=lambda w: (w["segment_id"], w["word_index"])):
        h.update(f"{w['word']}|{w['start_s']:.3f}|{w['end_s']:.3f}|{w.get('speaker')}\n".encode())
    for s in sorted(segments, key=lambda s: s["segment_id"]):
        h.update(f"{s['text']}|{s.get('language')}|{s.get('speaker')}\n".encode())
    return h.hexdigest()[:16]

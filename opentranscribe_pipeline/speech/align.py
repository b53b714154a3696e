"""Word timings: every word of a transcript gets a start and an end, and says how it got them
(``Word.timing_source``):

- ``cross_attention``: Whisper's own cross-attention DTW (faster-whisper's ``find_alignment``)
  over the VAD chunks, from the encoder output decoding already computed
  (:func:`cross_attention_alignments`), or in a second encoder pass
  (:func:`cross_attention_words`); used when no alignment model is configured, e.g. offline;
- ``alignment``: a wav2vec2 CTC model through ``whisperx.align`` (:class:`Wav2Vec2Aligner`;
  configure ``align_model``; WhisperX's default models need hub access);
- ``interpolated``: a word the wav2vec2 aligner could not place (digits, symbols) gets the
  span between its neighbours, so no word ever lacks a time.

Then :func:`clip_to_speech` keeps word edges out of the pauses the VAD heard.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from .decode import SAMPLE_RATE

TIMING_ALIGNMENT = "alignment"
TIMING_CROSS_ATTENTION = "cross_attention"
TIMING_INTERPOLATED = "interpolated"
# the longest plausible word: this much per letter, at least MIN_MAX_WORD_S (see max_word_s)
MAX_S_PER_CHAR = 0.25
MIN_MAX_WORD_S = 1.0
# faster-whisper's defaults: punctuation glued to the word before / after it
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    score: float
    timing_source: str


def timing_method(align_model: str | None) -> str:
    """How a run times its words (``transcripts.timing_method``): ``alignment:<model>`` with a
    wav2vec2 alignment model, else Whisper's cross-attention."""
    return f"{TIMING_ALIGNMENT}:{align_model}" if align_model else TIMING_CROSS_ATTENTION


# -- Whisper's cross-attention ------------------------------------------------------------
def cross_attention_alignments(
    wm, tokenizer, texts: list[str], encoded, frames: list[int], features
) -> list[list[dict]]:
    """faster-whisper's alignment of each decoded text of a batch against the batch's encoder
    output (``encoded``, computed once for decoding): one list of word dicts per chunk.
    ``wm``: the ``faster_whisper.WhisperModel``; ``frames``: each chunk's mel frames of real
    audio; ``features``: the batch's mels, re-encoded chunk by chunk only when the batch fails."""
    tokens = [tokenizer.encode(" " + (text.strip() or ".")) for text in texts]
    try:
        return list(wm.find_alignment(tokenizer, tokens, encoded, frames))
    except IndexError:
        # CTranslate2 gave no alignment pairs for a chunk (seen on real speech): faster-whisper
        # then indexes an empty array. Align each chunk of the batch alone, and give the one that
        # fails an empty alignment (its words are timed from their segment, as for an
        # end-of-text-only chunk) instead of failing the whole file.
        out: list[list[dict]] = []
        for i, (chunk_tokens, n_frames) in enumerate(zip(tokens, frames)):
            try:
                one = wm.encode(features[i : i + 1])
                out.extend(wm.find_alignment(tokenizer, [chunk_tokens], one, [n_frames]))
            except IndexError:
                out.append([])
        return out


def cross_attention_words(
    wm, chunks: list[dict], samples: np.ndarray, language: str, batch_size: int
) -> list[tuple[Word, ...]]:
    """Word times from Whisper's cross-attention in a second encoder pass, batched over the VAD
    chunks (``start``, ``end``, ``text`` dicts): one tuple of words per chunk."""
    from faster_whisper.tokenizer import Tokenizer
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task="transcribe", language=language)
    n_mels = wm.feat_kwargs.get("feature_size") or 80
    out: list[tuple[Word, ...]] = []
    bs = max(1, batch_size)
    for b in range(0, len(chunks), bs):
        batch = chunks[b : b + bs]
        feats, tokens, frames = [], [], []
        for seg in batch:
            chunk = samples[int(seg["start"] * SAMPLE_RATE) : int(seg["end"] * SAMPLE_RATE)][:N_SAMPLES]
            mel = log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0])
            feats.append(np.asarray(mel, dtype=np.float32))
            tokens.append(tokenizer.encode(" " + seg["text"].strip()))
            frames.append(min(len(chunk) // 160, 3000))  # mel frames of real audio (10 ms hop)
        encoder_output = wm.encode(np.stack(feats))
        alignments = wm.find_alignment(tokenizer, tokens, encoder_output, frames)
        out.extend(alignment_words(alignment, seg["start"], seg["end"]) for seg, alignment in zip(batch, alignments))
    return out


def alignment_words(alignment: list[dict], start_s: float, end_s: float) -> tuple[Word, ...]:
    """faster-whisper's alignment of one chunk (``start_s`` to ``end_s``) -> Words in media time.

    Punctuation is merged into its word as faster-whisper does, and times are clamped to
    the VAD chunk so a word never leaves the region it was heard in.
    """
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
    start, end = float(start_s), float(end_s)
    out = []
    for w in alignment:
        text = w["word"].strip()
        if not text:
            continue
        w_start = min(max(start + float(w["start"]), start), end)
        w_end = min(max(start + float(w["end"]), w_start), end)
        out.append(Word(text, round(w_start, 3), round(w_end, 3), float(w["probability"]), TIMING_CROSS_ATTENTION))
    return tuple(out)


# -- wav2vec2 ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignedSegment:
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]


class Wav2Vec2Aligner:
    """``whisperx.align`` with one wav2vec2 model per language, loaded on first use and kept
    for the batch (``align_model``: a hub id, a local directory, or ``default`` for WhisperX's
    per-language model)."""

    def __init__(self, align_model: str, device: str):
        self.align_model = align_model
        self.device = device
        self._models: dict[str, tuple[object, dict]] = {}

    def close(self) -> None:
        self._models.clear()

    def align(self, chunks: list[dict], samples: np.ndarray, language: str) -> list[AlignedSegment]:
        """The aligner's segments for the chunks (``start``, ``end``, ``text`` dicts)."""
        import whisperx

        if language not in self._models:
            name = None if self.align_model == "default" else self.align_model
            self._models[language] = whisperx.load_align_model(language, self.device, model_name=name)
        model, metadata = self._models[language]
        aligned = whisperx.align(
            [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in chunks],
            model,
            metadata,
            samples,
            self.device,
            return_char_alignments=False,
        )
        return [
            AlignedSegment(
                seg["start"],
                seg["end"],
                seg["text"].strip(),
                tuple(fill_missing_times(seg.get("words", []), seg["start"], seg["end"])),
            )
            for seg in aligned["segments"]
        ]


def fill_missing_times(words: list[dict], seg_start: float, seg_end: float) -> list[Word]:
    """Aligner output -> Words; a word without times gets the gap between its neighbours."""
    out: list[Word] = []
    n = len(words)
    for i, w in enumerate(words):
        text = str(w.get("word", "")).strip()
        if not text:
            continue
        if w.get("start") is not None and w.get("end") is not None:
            out.append(
                Word(text, float(w["start"]), float(w["end"]), float(w.get("score", math.nan)), TIMING_ALIGNMENT)
            )
            continue
        prev_end = next(
            (float(words[j]["end"]) for j in range(i - 1, -1, -1) if words[j].get("end") is not None), seg_start
        )
        next_start = next(
            (float(words[j]["start"]) for j in range(i + 1, n) if words[j].get("start") is not None), seg_end
        )
        next_start = max(next_start, prev_end)
        out.append(Word(text, round(prev_end, 3), round(next_start, 3), math.nan, TIMING_INTERPOLATED))
    return out


# -- keeping words inside the speech -------------------------------------------------------
def clip_to_speech(words: tuple[Word, ...], islands: list[tuple[float, float]] | None) -> tuple[Word, ...]:
    """Keep each word's edges out of the pauses the VAD heard around it.

    A VAD chunk runs up to 30 s over several speech islands and the silence or noise between
    them; the aligner (cross-attention DTW, or interpolation between neighbours) may give the
    first word after a pause a start back inside the pause, or the last word before one an end
    inside it ("People" at 0.0-11.2 s for speech starting at 10.9 s). A word that starts in a
    pause and ends after it starts where the speech after the pause starts; one that starts
    before a pause and ends inside it ends where the speech before it ended. A word wholly
    inside a pause, and every word when ``islands`` is None (no VAD scores), is left as is.
    ``islands``: sorted, disjoint ``(start_s, end_s)`` regions (:func:`.activity.speech_islands`).

    Noise the VAD takes for speech leaves no pause to clip to: there the first and the last
    word of ``words`` (one VAD chunk, where the stretching happens) are held to
    :func:`max_word_s` (the first loses its start, the last its end)."""
    words = _cap_chunk_edges(words)
    if not islands or not words:
        return words
    starts = [a for a, _ in islands]
    out = []
    for w in words:
        start, end = w.start_s, w.end_s
        i = bisect.bisect_right(starts, start) - 1  # the island starting at or before the word
        if i < 0 or start > islands[i][1]:  # the word starts in a pause
            nxt = i + 1
            if nxt < len(islands) and islands[nxt][0] < end:
                start = round(islands[nxt][0], 3)
        j = bisect.bisect_right(starts, end) - 1  # the island starting at or before the word's end
        if j >= 0 and end > islands[j][1] and islands[j][1] > start:  # the word ends in a pause
            end = round(islands[j][1], 3)
        if (start, end) != (w.start_s, w.end_s) and start <= end:
            w = Word(w.word, start, end, w.score, w.timing_source)
        out.append(w)
    return tuple(out)


def max_word_s(word: str) -> float:
    """The longest a word can plausibly last: ``MAX_S_PER_CHAR`` per letter or digit, at least
    ``MIN_MAX_WORD_S`` (slow, drawn-out speech stays well inside it)."""
    return max(MIN_MAX_WORD_S, MAX_S_PER_CHAR * sum(c.isalnum() for c in word))


def _cap_chunk_edges(words: tuple[Word, ...]) -> tuple[Word, ...]:
    if not words:
        return words
    out = list(words)
    first, last = out[0], out[-1]
    if first.end_s - first.start_s > max_word_s(first.word):
        out[0] = first = Word(
            first.word, round(first.end_s - max_word_s(first.word), 3), first.end_s, first.score, first.timing_source
        )
    if len(out) > 1 and last.end_s - last.start_s > max_word_s(last.word):
        out[-1] = Word(
            last.word, last.start_s, round(last.start_s + max_word_s(last.word), 3), last.score, last.timing_source
        )
    return tuple(out)

"""Transcription with WhisperX: VAD cut and merge, batched faster-whisper, word timings.

A :class:`Transcriber` holds one loaded model for a whole batch of files (load once, loop,
free), which is what makes a batch cheaper than a per-file task chain.

Word timings come from one of two aligners, and every word says how it got its time
(``Word.timing_source``):
- ``alignment``: a wav2vec2 CTC model through ``whisperx.align`` (configure ``align_model``;
  WhisperX's default models need hub access);
- ``cross_attention``: Whisper's own cross-attention DTW (faster-whisper's ``find_alignment``)
  over the same VAD chunks, used when no alignment model is configured, e.g. offline;
- ``interpolated``: a word the wav2vec2 aligner could not place (digits, symbols) gets the
  span between its neighbours, so no word ever lacks a time.
"""

from __future__ import annotations

import bisect
import gc
import logging
import math
from collections import Counter, deque
from contextlib import contextmanager
from contextlib import nullcontext as _nothing
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import settings
from .activity import SpeechActivity, bundled_checkpoint, fingerprint, speech_islands
from .decode import SAMPLE_RATE
from .models import ResolvedModel, set_pyannote_telemetry

log = logging.getLogger(__name__)

TIMING_ALIGNMENT = "alignment"
TIMING_CROSS_ATTENTION = "cross_attention"
TIMING_INTERPOLATED = "interpolated"
# language detection looks at the speech of the first 10 minutes (more when that is unsure)
LANGUAGE_PREFIX_S = 600.0
# a chunk decoded with a lower average token log-probability is not speech (see _heard)
MIN_AVG_LOGPROB = -1.0
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


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    avg_logprob: float | None
    words: tuple[Word, ...] = ()


VAD_OWN = "whisperx"  # WhisperX's VAD ran on the file
VAD_SHARED = "diarization"  # the speech activity diarization computed was used


@dataclass(frozen=True)
class Transcript:
    language: str | None
    language_probability: float | None
    segments: tuple[Segment, ...]
    vad: str = VAD_OWN

    @property
    def n_words(self) -> int:
        return sum(len(s.words) for s in self.segments)


@dataclass(frozen=True)
class AsrOptions:
    """Knobs of one transcription run (resource config maps onto these one to one)."""

    device: str = "cpu"  # "cpu" or "cuda" ("auto" is resolved by the caller)
    device_index: int = 0
    compute_type: str = "int8"
    batch_size: int = 8
    language: str | None = None  # None: detect per file
    beam_size: int = 5
    threads: int = 0  # CPU threads for CTranslate2; 0 = let it choose
    chunk_size: int = 30  # seconds; VAD merges speech into chunks up to this long
    align_model: str | None = None  # wav2vec2 id/dir, "default" for WhisperX's per-language model
    hf_token: str | None = field(default=None, repr=False)
    # unsure language detections (see Transcriber.detect_language); None: from settings
    language_floor: float | None = None
    language_fallback: str | None = None


class LanguageGuess(NamedTuple):
    language: str
    probability: float
    source: str = "detected"  # or "batch" / "fallback": an unsure detection took that language


def choose_language(
    probabilities: list[tuple[str, float]],
    priors: list[tuple[str, str]],
    floor: float,
    ratio: float,
) -> LanguageGuess:
    """The detector's most probable language, unless it is unsure (its probability under
    ``floor``): then the first of ``priors`` (``(language, source)``: the batch's majority,
    then the configured fallback) that the detector gives at least ``ratio`` times its top
    probability. One phrase is too little speech for Whisper's detector: on 500 one-phrase
    English clips (espeak-ng and flite voices) 21 came out German, Japanese, Polish, Russian,
    Arabic... with probabilities 0.18-0.69 and English second or third at 0.07-0.32 (2 left
    with English under a fifth of the top). A long file the detector is unsure of keeps its
    language when the prior is far less likely (a 14 s German dialogue: de 0.66, en 0.07).
    The probability recorded is the detector's for the language chosen."""
    top, p_top = probabilities[0]
    if p_top >= floor:
        return LanguageGuess(top, float(p_top))
    given = dict(probabilities)
    for language, source in priors:
        p = given.get(language, 0.0)
        if language == top:
            return LanguageGuess(top, float(p_top))
        if p >= ratio * p_top:
            return LanguageGuess(language, float(p), source)
    return LanguageGuess(top, float(p_top))


class AsrOutOfMemory(RuntimeError):
    """The model ran out of device memory; the message names ``batch_size`` to lower."""


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def free_device_memory() -> None:
    """After dropping a model: collect it and hand cached CUDA memory back to the device."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


class Transcriber:
    """Load once, transcribe many arrays, free. Use as a context manager."""

    def __init__(self, model: ResolvedModel, options: AsrOptions):
        self.model = model
        self.options = options
        self._pipeline = None
        self._align: dict[str, tuple[object, dict]] = {}
        # cross-attention word timings from the ASR pass's encoder output (False: a second
        # encoder pass per chunk, as before; benchmarks/word_timing.py compares the two)
        self.words_in_asr_pass = True
        # languages of this batch's files detected above the floor (the prior of unsure ones)
        self.batch_languages: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Transcriber:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        set_pyannote_telemetry()  # WhisperX's VAD is a pyannote model
        import whisperx

        opts = self.options
        log.info("loading ASR model %s (%s) on %s/%s", self.model.spec, self.model.path, opts.device, opts.compute_type)
        self._pipeline = whisperx.load_model(
            self.model.path,
            opts.device,
            device_index=opts.device_index,
            compute_type=opts.compute_type,
            asr_options={"beam_size": opts.beam_size},
            vad_method="pyannote",  # whisperx's bundled checkpoint; silero goes through torch.hub
            local_files_only=self.model.is_local,
            threads=opts.threads,
            use_auth_token=opts.hf_token,
        )

    def close(self) -> None:
        self._pipeline = None
        self._align.clear()
        free_device_memory()

    @property
    def multilingual(self) -> bool:
        return bool(self._pipeline.model.model.is_multilingual)

    @property
    def timing_method(self) -> str:
        return f"{TIMING_ALIGNMENT}:{self.options.align_model}" if self.options.align_model else TIMING_CROSS_ATTENTION

    # -- steps -----------------------------------------------------------------------------
    def detect_language(self, samples: np.ndarray) -> LanguageGuess:
        """Language of the speech in ``samples``: English-only models say so; multilingual
        ones vote over up to four 30 s windows of VAD-filtered speech, not just the first
        30 s of the file (music or silence there misleads WhisperX's detector), taken from
        the first ``LANGUAGE_PREFIX_S`` of the file unless that leaves the vote unsure.

        A detection under the floor (``language_floor``, ``OPENTRANSCRIBE_LANGUAGE_FLOOR``,
        0.7) takes the majority language of the batch's files detected above it so far, else
        the fallback (``language_fallback``, ``OPENTRANSCRIBE_LANGUAGE_FALLBACK``, ``en``), when
        the detector gives that language at least a fifth of its top probability
        (:func:`choose_language`)."""
        if self.options.language:
            return LanguageGuess(self.options.language, 1.0)
        if not self.multilingual:
            return LanguageGuess("en", 1.0)
        # faster-whisper runs its VAD over all it is given and copies out all the speech, to
        # use 2 minutes of it: a bounded prefix keeps a 2-hour file's detection as cheap as a
        # 10-minute one's; the whole file only when the prefix has too little speech
        head = samples[: int(LANGUAGE_PREFIX_S * SAMPLE_RATE)]
        language, probability, every = self._pipeline.model.detect_language(
            audio=head, vad_filter=True, language_detection_segments=4
        )
        if head.size < samples.size and probability < 0.5:
            language, probability, every = self._pipeline.model.detect_language(
                audio=samples, vad_filter=True, language_detection_segments=4
            )
        floor, fallback = self._language_prior_settings()
        priors = [(lang, "batch") for lang, _ in self.batch_languages.most_common(1)]
        priors += [(fallback, "fallback")] if fallback else []
        guess = choose_language(list(every) or [(language, probability)], priors, floor, settings.LANGUAGE_PRIOR_RATIO)
        if guess.source != "detected":
            log.info(
                "language: %s (p=%.2f) is under the floor %.2f; the %s language %s has p=%.2f",
                language,
                probability,
                floor,
                guess.source,
                guess.language,
                guess.probability,
            )
        return guess

    def _language_prior_settings(self) -> tuple[float, str | None]:
        floor = self.options.language_floor
        fallback = self.options.language_fallback
        return (
            settings.language_floor() if floor is None else floor,
            settings.language_fallback() if fallback is None else (fallback or None),
        )

    @property
    def vad_fingerprint(self) -> str | None:
        """The :func:`~.activity.fingerprint` a shared speech activity must carry to stand in
        for this pipeline's VAD; None when the VAD is not WhisperX's bundled pyannote one."""
        from whisperx.vads import Pyannote

        vad = getattr(self._pipeline, "vad_model", None)
        if not isinstance(vad, Pyannote):
            return None
        inference = vad.vad_pipeline._segmentation
        return fingerprint(bundled_checkpoint(), inference.duration, inference.step)

    def usable_activity(self, activity: SpeechActivity | None, num_samples: int) -> bool:
        return (
            activity is not None
            and activity.fingerprint == self.vad_fingerprint
            and activity.num_samples == num_samples
        )

    def transcribe(self, samples: np.ndarray, activity: SpeechActivity | None = None) -> Transcript:
        """``activity``: the speech activity diarization computed for these samples; used in
        place of WhisperX's VAD when it was computed the same way (see speech/activity.py),
        which gives the same VAD cut without running the segmentation model again."""
        if self._pipeline is None:
            raise RuntimeError("Transcriber is not loaded; use it as a context manager")
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        language, probability, source = self.detect_language(samples)
        shared = self.usable_activity(activity, samples.size)
        own_vad = self._pipeline.vad_model
        seen: list = []  # the VAD's scores, for the speech islands words are kept inside
        if shared:
            scores = activity.sliding_window_feature()
            self._pipeline.vad_model = lambda _file: scores  # whisperx then merges with Pyannote's rule
            seen.append(scores)
        elif self.vad_fingerprint is not None:  # WhisperX's pyannote VAD: the same call, its scores kept
            self._pipeline.vad_model = lambda file: seen.append(own_vad(file)) or seen[-1]
        # cross-attention word timings are taken in the same pass, from the same encoder output
        words_here = self.words_in_asr_pass and not self.options.align_model
        alignments: list[list[dict]] = []
        try:
            with self._words_from_the_asr_pass(alignments) if words_here else _nothing():
                result = self._pipeline.transcribe(
                    samples,
                    batch_size=self.options.batch_size,
                    language=language,
                    chunk_size=self.options.chunk_size,
                )
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise AsrOutOfMemory(
                    f"ASR ran out of memory on {self.options.device}: batch_size={self.options.batch_size} "
                    f"is probably too large (or use compute_type=int8)"
                ) from exc
            raise
        finally:
            self._pipeline.vad_model = own_vad
        vad = VAD_SHARED if shared else VAD_OWN
        islands = self._islands(seen[0], samples.size) if seen else None
        if words_here and len(alignments) == len(result["segments"]):
            segments = []
            for seg, alignment in zip(result["segments"], alignments):
                if _heard(seg):
                    words = clip_to_speech(_words_from_alignment(alignment, seg), islands)
                    segments.extend(split_sentences(seg, words))
            if not segments:  # nothing was said (noise, music, hum): no language either, not a guess
                return Transcript(None, None, (), vad)
            self._remember_language(language, probability, source)
            return Transcript(language, probability, tuple(segments), vad)
        raw = [s for s in result["segments"] if _heard(s)]
        if not raw:  # nothing was said (noise, music, hum): no language either, not a guess
            return Transcript(None, None, (), vad)
        if self.options.align_model:
            segments = self._align_wav2vec2(raw, samples, language, islands)
        else:
            if words_here:  # a WhisperX that batches differently from what _words_from_the_asr_pass expects
                log.warning(
                    "word timings: ASR pass gave %d alignments for %d segments, re-encoding", len(alignments), len(raw)
                )
            segments = self._align_cross_attention(raw, samples, language, islands)
        self._remember_language(language, probability, source)
        return Transcript(language, probability, tuple(segments), vad)

    def _remember_language(self, language: str, probability: float, source: str) -> None:
        """A file of this batch with speech, detected above the floor: its language is the
        batch's prior for the unsure ones after it."""
        floor = self._language_prior_settings()[0]
        if source == "detected" and not self.options.language and self.multilingual and probability >= floor:
            self.batch_languages[language] += 1

    def _islands(self, scores, num_samples: int) -> list[tuple[float, float]]:
        """Where the VAD heard speech (its scores binarized with the pipeline's own onset and
        offset, as WhisperX cuts its chunks)."""
        params = getattr(self._pipeline, "_vad_params", {})
        frames = scores.sliding_window
        return speech_islands(
            scores.data[:, 0],
            frames.start,
            frames.step,
            frames.duration,
            onset=params.get("vad_onset", 0.5),
            offset=params.get("vad_offset", 0.363),
            total_s=num_samples / SAMPLE_RATE,
        )

    @contextmanager
    def _words_from_the_asr_pass(self, alignments: list[list[dict]]):
        """While WhisperX transcribes: each batch's encoder output is computed once, used for
        decoding and then for Whisper's cross-attention alignment of the decoded text (what
        :meth:`_align_cross_attention` does in a second pass, re-encoding every chunk).
        ``alignments`` gets one alignment per VAD chunk, in WhisperX's segment order.

        WhisperX's pipeline calls ``preprocess`` on each chunk's samples (recorded here: the
        real length of each padded mel) and ``generate_segment_batched`` per batch, in order."""
        from faster_whisper.tokenizer import Tokenizer

        pipeline = self._pipeline
        wm = pipeline.model
        lengths: deque[int] = deque()
        own_preprocess = pipeline.preprocess
        own_generate = wm.generate_segment_batched
        own_encode = wm.encode

        def preprocess(inputs):
            lengths.append(int(inputs["inputs"].shape[0]))
            return own_preprocess(inputs)

        def generate(features, tokenizer: Tokenizer, options, encoder_output=None):
            encoded = own_encode(features)
            wm.encode = lambda _features: encoded
            try:
                out = own_generate(features, tokenizer, options)
            finally:
                wm.__dict__.pop("encode", None)
            frames = [min(lengths.popleft() // 160, 3000) for _ in range(features.shape[0])]  # 10 ms hop
            tokens = [tokenizer.encode(" " + (text.strip() or ".")) for text in out["text"]]
            try:
                alignments.extend(wm.find_alignment(tokenizer, tokens, encoded, frames))
            except IndexError:
                # CTranslate2 gave no alignment pairs for a chunk (seen on real speech): faster-
                # whisper then indexes an empty array. Align each chunk of the batch alone, and
                # give the one that fails an empty alignment (its words are timed from their
                # segment, as for an end-of-text-only chunk) instead of failing the whole file.
                for i, (chunk_tokens, n_frames) in enumerate(zip(tokens, frames)):
                    try:
                        one = own_encode(features[i : i + 1])
                        alignments.extend(wm.find_alignment(tokenizer, [chunk_tokens], one, [n_frames]))
                    except IndexError:
                        alignments.append([])
            return out

        pipeline.preprocess = preprocess
        wm.generate_segment_batched = generate
        try:
            yield
        finally:
            pipeline.__dict__.pop("preprocess", None)
            wm.__dict__.pop("generate_segment_batched", None)

    def _align_cross_attention(
        self, raw: list[dict], samples: np.ndarray, language: str, islands: list[tuple[float, float]] | None = None
    ) -> list[Segment]:
        """Word times from Whisper's cross-attention, batched over VAD chunks."""
        from faster_whisper.tokenizer import Tokenizer
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        wm = self._pipeline.model  # faster_whisper.WhisperModel
        tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task="transcribe", language=language)
        n_mels = wm.feat_kwargs.get("feature_size") or 80
        out: list[Segment] = []
        bs = max(1, self.options.batch_size)
        for b in range(0, len(raw), bs):
            batch = raw[b : b + bs]
            feats, tokens, frames = [], [], []
            for seg in batch:
                chunk = samples[int(seg["start"] * SAMPLE_RATE) : int(seg["end"] * SAMPLE_RATE)][:N_SAMPLES]
                mel = log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0])
                feats.append(np.asarray(mel, dtype=np.float32))
                tokens.append(tokenizer.encode(" " + seg["text"].strip()))
                frames.append(min(len(chunk) // 160, 3000))  # mel frames of real audio (10 ms hop)
            encoder_output = wm.encode(np.stack(feats))
            alignments = wm.find_alignment(tokenizer, tokens, encoder_output, frames)
            for seg, alignment in zip(batch, alignments):
                words = clip_to_speech(_words_from_alignment(alignment, seg), islands)
                out.extend(split_sentences(seg, words))
        return out

    def _align_wav2vec2(
        self, raw: list[dict], samples: np.ndarray, language: str, islands: list[tuple[float, float]] | None = None
    ) -> list[Segment]:
        import whisperx

        if language not in self._align:
            name = None if self.options.align_model == "default" else self.options.align_model
            model, metadata = whisperx.load_align_model(language, self.options.device, model_name=name)
            self._align[language] = (model, metadata)
        model, metadata = self._align[language]
        aligned = whisperx.align(
            [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in raw],
            model,
            metadata,
            samples,
            self.options.device,
            return_char_alignments=False,
        )
        out = []
        for seg, src in zip(aligned["segments"], raw):
            words = clip_to_speech(tuple(_fill_missing_times(seg.get("words", []), seg["start"], seg["end"])), islands)
            out.append(Segment(seg["start"], seg["end"], seg["text"].strip(), src.get("avg_logprob"), tuple(words)))
        return out


def _words_from_alignment(alignment: list[dict], seg: dict) -> tuple[Word, ...]:
    """faster-whisper's per-chunk alignment -> Words in media time.

    Punctuation is merged into its word as faster-whisper does, and times are clamped to
    the VAD chunk so a word never leaves the region it was heard in.
    """
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
    start, end = float(seg["start"]), float(seg["end"])
    out = []
    for w in alignment:
        text = w["word"].strip()
        if not text:
            continue
        w_start = min(max(start + float(w["start"]), start), end)
        w_end = min(max(start + float(w["end"]), w_start), end)
        out.append(Word(text, round(w_start, 3), round(w_end, 3), float(w["probability"]), TIMING_CROSS_ATTENTION))
    return tuple(out)


def _heard(seg: dict) -> bool:
    """A VAD chunk Whisper decoded to text it believes: not empty, and an average token
    log-probability at or above ``MIN_AVG_LOGPROB`` (Whisper's own ``log_prob_threshold``,
    where it calls a decoding failed). Music and tones the VAD passes come out as "Woo!" or
    "Ruh -uh -uh!" at -1.1 to -1.5; the 222 chunks of real speech in the sample archive and two
    messy drops (noise beds down to 5 dB SNR) score -0.62 or better."""
    if not seg["text"].strip():
        return False
    logprob = seg.get("avg_logprob")
    return logprob is None or not math.isfinite(logprob) or logprob >= MIN_AVG_LOGPROB


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


SENTENCE_END = (".", "?", "!", "。", "？", "！")


def split_sentences(seg: dict, words: tuple[Word, ...]) -> list[Segment]:
    """One VAD chunk (up to 30 s) -> one segment per sentence, as WhisperX's aligner does.

    Sentences end at a word ending in . ? ! (quotes and brackets after it allowed). Without
    words the chunk stays whole.
    """
    text = seg["text"].strip()
    if not words:
        return [Segment(float(seg["start"]), float(seg["end"]), text, seg.get("avg_logprob"), ())]
    groups: list[list[Word]] = [[]]
    for w in words:
        groups[-1].append(w)
        if w.word.rstrip("\"')]}”’").endswith(SENTENCE_END):
            groups.append([])
    groups = [g for g in groups if g]
    return [
        Segment(g[0].start_s, g[-1].end_s, " ".join(w.word for w in g), seg.get("avg_logprob"), tuple(g))
        for g in groups
    ]


def _fill_missing_times(words: list[dict], seg_start: float, seg_end: float) -> list[Word]:
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

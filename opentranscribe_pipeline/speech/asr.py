"""Transcription with WhisperX's models: VAD cut and merge, batched faster-whisper, word timings.

A :class:`Transcriber` holds one loaded model for a whole batch of files (load once, loop,
free), which is what makes a batch cheaper than a per-file task chain.

The pipeline WhisperX builds (Whisper, its pyannote VAD, the decoding options) is built once in
:meth:`Transcriber.load` and never changed after: each file runs the VAD (or takes the speech
activity diarization computed, ``speech/activity.py``), merges it into chunks of up to 30 s with
WhisperX's rule, and decodes the chunks in batches (:meth:`Transcriber._decode`, the steps of
WhisperX's ``transcribe``), keeping from each batch's decoding what WhisperX drops: Whisper's
no-speech probability per chunk and the encoder output, which then gives the cross-attention
word timings (``speech/align.py``) without a second encoder pass.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import settings
from .activity import SpeechActivity, bundled_checkpoint, fingerprint, speech_islands
from .align import (
    Wav2Vec2Aligner,
    Word,
    alignment_words,
    clip_to_speech,
    cross_attention_alignments,
    cross_attention_words,
    timing_method,
)
from .decode import SAMPLE_RATE
from .device import free_device_memory
from .language import LanguageGuess, choose_language
from .models import ResolvedModel, set_pyannote_telemetry

log = logging.getLogger(__name__)

# language detection looks at the speech of the first 10 minutes (more when that is unsure)
LANGUAGE_PREFIX_S = 600.0
# a chunk decoded with a lower average token log-probability is not speech (see _heard)
MIN_AVG_LOGPROB = -1.0
# a chunk Whisper itself calls no speech (its no_speech_threshold), decoded with less confidence
# than real speech and as one word repeated, is Whisper's loop on music or noise (see _heard)
NO_SPEECH_PROB = 0.6
CONFIDENT_LOGPROB = -0.5


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    avg_logprob: float | None
    # Whisper's probability that the chunk the segment was decoded from holds no speech (the
    # <|nospeech|> token's at the first decoding step); None where the decoder gave none
    no_speech_prob: float | None = None
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


class AsrOutOfMemory(RuntimeError):
    """The model ran out of device memory; the message names ``batch_size`` to lower."""


class _Decoded(NamedTuple):
    """What Whisper made of one batch of VAD chunks, in their order."""

    texts: list[str]
    avg_logprobs: list[float]
    no_speech_probs: list[float]


class Transcriber:
    """Load once, transcribe many arrays, free. Use as a context manager."""

    def __init__(self, model: ResolvedModel, options: AsrOptions):
        self.model = model
        self.options = options
        self._pipeline = None
        self._wav2vec2 = Wav2Vec2Aligner(options.align_model, options.device) if options.align_model else None
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
        if self._wav2vec2 is not None:
            self._wav2vec2.close()
        free_device_memory()

    @property
    def multilingual(self) -> bool:
        return bool(self._pipeline.model.model.is_multilingual)

    @property
    def timing_method(self) -> str:
        return timing_method(self.options.align_model)

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
        vad = VAD_SHARED if shared else VAD_OWN
        # cross-attention word timings are taken in the same pass, from the same encoder output
        words_here = self.words_in_asr_pass and not self.options.align_model
        try:
            scores = activity.sliding_window_feature() if shared else self._vad_scores(samples)
            chunks, alignments = self._decode(samples, self._vad_chunks(scores), language, words_here)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise AsrOutOfMemory(
                    f"ASR ran out of memory on {self.options.device}: batch_size={self.options.batch_size} "
                    f"is probably too large (or use compute_type=int8)"
                ) from exc
            raise
        # the VAD's scores (pyannote's): the speech islands words are kept inside
        islands = self._islands(scores, samples.size) if shared or self.vad_fingerprint is not None else None
        heard = [i for i, chunk in enumerate(chunks) if _heard(chunk)]
        if not heard:  # nothing was said (noise, music, hum): no language either, not a guess
            return Transcript(None, None, (), vad)
        raw = [chunks[i] for i in heard]
        if self._wav2vec2 is not None:
            segments = self._align_wav2vec2(raw, samples, language, islands)
        else:
            if words_here:
                words = [alignment_words(alignments[i], chunks[i]["start"], chunks[i]["end"]) for i in heard]
            else:  # a second encoder pass (benchmarks/word_timing.py compares the two)
                words = cross_attention_words(self._pipeline.model, raw, samples, language, self.options.batch_size)
            segments = [s for chunk, w in zip(raw, words) for s in split_sentences(chunk, clip_to_speech(w, islands))]
        self._remember_language(language, probability, source)
        return Transcript(language, probability, tuple(segments), vad)

    # -- the steps of WhisperX's transcribe ------------------------------------------------
    def _vad_class(self):
        from whisperx.vads import Pyannote, Vad

        vad = self._pipeline.vad_model
        return type(vad) if isinstance(vad, Vad) else Pyannote

    def _vad_scores(self, samples: np.ndarray):
        """The VAD's output for the file (pyannote's: a SlidingWindowFeature of scores)."""
        waveform = self._vad_class().preprocess_audio(samples)
        return self._pipeline.vad_model({"waveform": waveform, "sample_rate": SAMPLE_RATE})

    def _vad_chunks(self, scores) -> list[dict]:
        """The VAD's speech merged into chunks of up to ``chunk_size`` seconds (``start``, ``end``),
        with the pipeline's onset and offset, as WhisperX cuts them."""
        params = self._pipeline._vad_params
        return self._vad_class().merge_chunks(
            scores, self.options.chunk_size, onset=params["vad_onset"], offset=params["vad_offset"]
        )

    def _decode(
        self, samples: np.ndarray, vad_chunks: list[dict], language: str, with_alignments: bool
    ) -> tuple[list[dict], list[list[dict]]]:
        """Every VAD chunk decoded, in batches of ``batch_size``: one dict per chunk (``start``,
        ``end``, ``text``, ``avg_logprob``, ``no_speech_prob``) and, ``with_alignments``, each
        chunk's cross-attention alignment from the batch's encoder output.

        These are the steps of WhisperX's ``FasterWhisperPipeline.transcribe`` and
        ``generate_segment_batched`` (whisperx 3.8), with the same features, prompt and options,
        so the text is WhisperX's; what they add is ``return_no_speech_prob`` and the encoder
        output kept for the alignment."""
        import torch
        from faster_whisper.tokenizer import Tokenizer
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        wm = self._pipeline.model  # whisperx's faster_whisper.WhisperModel
        tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task="transcribe", language=language)
        n_mels = wm.feat_kwargs.get("feature_size")
        n_mels = 80 if n_mels is None else n_mels
        bs = max(1, self.options.batch_size)
        chunks: list[dict] = []
        alignments: list[list[dict]] = []
        for b in range(0, len(vad_chunks), bs):
            batch = vad_chunks[b : b + bs]
            pieces = [samples[int(c["start"] * SAMPLE_RATE) : int(c["end"] * SAMPLE_RATE)] for c in batch]
            # (batch, n_mels, 3000): every chunk padded to Whisper's 30 s
            features = torch.stack(
                [log_mel_spectrogram(p, n_mels=n_mels, padding=N_SAMPLES - p.shape[0]) for p in pieces]
            )
            encoded = wm.encode(features)
            decoded = _generate(wm, encoded, tokenizer, self._pipeline.options, len(batch))
            for c, text, logprob, no_speech in zip(batch, *decoded):
                chunks.append(
                    {
                        "start": round(c["start"], 3),
                        "end": round(c["end"], 3),
                        "text": text,
                        "avg_logprob": logprob,
                        "no_speech_prob": no_speech,
                    }
                )
            if with_alignments:
                frames = [min(p.shape[0] // 160, 3000) for p in pieces]  # mel frames of real audio (10 ms hop)
                alignments.extend(cross_attention_alignments(wm, tokenizer, decoded.texts, encoded, frames, features))
        return chunks, alignments

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

    def _align_wav2vec2(
        self, raw: list[dict], samples: np.ndarray, language: str, islands: list[tuple[float, float]] | None = None
    ) -> list[Segment]:
        aligned = self._wav2vec2.align(raw, samples, language)
        return [
            Segment(
                seg.start_s,
                seg.end_s,
                seg.text,
                src.get("avg_logprob"),
                no_speech_prob=src.get("no_speech_prob"),
                words=clip_to_speech(seg.words, islands),
            )
            for seg, src in zip(aligned, raw)
        ]


def _generate(wm, encoded, tokenizer, options, n: int) -> _Decoded:
    """One batch through Whisper's decoder: WhisperX's ``generate_segment_batched`` (the same
    prompt, beam search and options; no timestamps), asking CTranslate2 for the no-speech
    probability too (``return_no_speech_prob``, as faster-whisper's own ``generate`` does)."""
    previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt is not None else []
    prompt = wm.get_prompt(
        tokenizer,
        previous,
        without_timestamps=options.without_timestamps,
        prefix=options.prefix,
        hotwords=options.hotwords,
    )
    results = wm.model.generate(
        encoded,
        [prompt] * n,
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        max_length=wm.max_length,
        suppress_blank=options.suppress_blank,
        suppress_tokens=options.suppress_tokens,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
        repetition_penalty=options.repetition_penalty,
        return_scores=True,
        return_no_speech_prob=True,
    )
    logprobs = []
    for r in results:
        seq_len = len(r.sequences_ids[0])
        logprobs.append(r.scores[0] * (seq_len**options.length_penalty) / (seq_len + 1))
    texts = tokenizer.tokenizer.decode_batch([[t for t in r.sequences_ids[0] if t < tokenizer.eot] for r in results])
    return _Decoded(texts, logprobs, [float(r.no_speech_prob) for r in results])


def _heard(seg: dict) -> bool:
    """A VAD chunk Whisper decoded to text it believes: not empty, and an average token
    log-probability at or above ``MIN_AVG_LOGPROB`` (Whisper's own ``log_prob_threshold``,
    where it calls a decoding failed). Music and tones the VAD passes come out as "Woo!" or
    "Ruh -uh -uh!" at -1.1 to -1.5; the 222 chunks of real speech in the sample archive and two
    messy drops (noise beds down to 5 dB SNR) score -0.62 or better.

    The second test is Whisper's repetition loop: a chunk above ``NO_SPEECH_PROB`` decoded under
    ``CONFIDENT_LOGPROB`` whose words are one word repeated. Music the VAD passed came out as
    "R -R -R -R -R -R!" at -0.80 with no-speech 0.70; the two numbers alone cannot tell it from
    a real quiet "Hello." between silences (-0.84, no-speech 0.74), the repetition can."""
    if not seg["text"].strip():
        return False
    logprob = seg.get("avg_logprob")
    if logprob is None or not math.isfinite(logprob):
        return True
    no_speech = seg.get("no_speech_prob")
    if no_speech is not None and no_speech > NO_SPEECH_PROB and logprob < CONFIDENT_LOGPROB and _loop(seg["text"]):
        return False
    return logprob >= MIN_AVG_LOGPROB


def _loop(text: str) -> bool:
    """Three or more words, at most a third of them distinct (runs of letters and digits, any
    case: Whisper wrote the music chunk " R-R-R-R-R-R!")."""
    words = re.findall(r"\w+", text.lower())
    return len(words) >= 3 and len(set(words)) * 3 <= len(words)


SENTENCE_END = (".", "?", "!", "。", "？", "！")


def split_sentences(seg: dict, words: tuple[Word, ...]) -> list[Segment]:
    """One VAD chunk (up to 30 s) -> one segment per sentence, as WhisperX's aligner does.

    Sentences end at a word ending in . ? ! (quotes and brackets after it allowed). Without
    words the chunk stays whole. Every sentence carries the chunk's ``avg_logprob`` and
    ``no_speech_prob`` (Whisper scores the chunk it decoded, not its sentences).
    """
    text = seg["text"].strip()
    scores = {"avg_logprob": seg.get("avg_logprob"), "no_speech_prob": seg.get("no_speech_prob")}
    if not words:
        return [Segment(float(seg["start"]), float(seg["end"]), text, **scores)]
    groups: list[list[Word]] = [[]]
    for w in words:
        groups[-1].append(w)
        if w.word.rstrip("\"')]}”’").endswith(SENTENCE_END):
            groups.append([])
    groups = [g for g in groups if g]
    return [Segment(g[0].start_s, g[-1].end_s, " ".join(w.word for w in g), **scores, words=tuple(g)) for g in groups]

"""English versions of transcripts with Whisper's own ``translate`` task.

The speech regions translated are the transcript's own: consecutive ``segments`` of the file
merged into windows of at most :data:`MAX_REGION_S` (Whisper's 30 s; WhisperX cuts VAD
speech the same way), cut where a pause reaches :data:`MAX_PAUSE_S`. Each window (padded by
:data:`PAD_S`, never into its neighbours) goes through the model with ``task="translate"``
and the detected source language, with timestamps; every English segment then gets the
speaker who speaks most during it in the file's ``segments`` (``speech/attribute.py``'s
``dominant_speaker``, the rule words get their speaker by), so the English rows carry the
same local labels as the original ones. Whole windows translate far better than single
sentences: Whisper needs the context (measured on the espeak-ng fixtures).

Only multilingual Whisper models translate. English-only models (``*.en``, e.g. the packaged
``tiny.en``) and ``large-v3-turbo`` (trained without translation data: it answers in the
source language) cannot: :func:`cannot_translate` says so from the name before anything is
loaded, and a loaded English-only model is caught too (:class:`CannotTranslate`). The
model is loaded only when a file needs translating, so batches of English media (copied
through) never load it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .asr import AsrOptions
from .decode import SAMPLE_RATE
from .device import free_device_memory
from .models import ResolvedModel

log = logging.getLogger(__name__)

MODES = ("never", "non_english", "always")
MAX_REGION_S = 30.0
PAD_S = 0.2
# Decoding is deterministic: beam search at temperature 0 only, with no 3-gram repeated in a
# window. faster-whisper's default falls back to *sampling* (temperatures 0.2-1.0) whenever
# the average log-probability is under -1, which small models on unusual voices hit on most
# windows: the same file then translated differently on every run (measured on the German
# fixture: three runs, three different texts, 13-47% of the reference words). Without the
# fallback, Whisper's known failure is a repetition loop ("I'm late, I'm late, I'm late");
# forbidding repeated 3-grams stops it (espeak-ng fixtures, one window each: 37% of the
# reference content words found without it, 45% with it). Part of the model version.
DECODING = {"temperature": 0.0, "no_repeat_ngram_size": 3}
DECODING_VERSION = "t0-norepeat3"


class CannotTranslate(RuntimeError):
    """The configured Whisper model has no working translate task."""


def cannot_translate(spec: str) -> str | None:
    """Why the model named ``spec`` cannot translate, or None if it may."""
    name = spec.rstrip("/").rsplit("/", 1)[-1].lower().removeprefix("packaged:")
    if name.endswith(".en") or ".en-" in name or name.startswith("distil-"):
        return (
            f"{spec} is an English-only Whisper model: it cannot translate (use a multilingual one, e.g. packaged:base)"
        )
    if "turbo" in name:
        return f"{spec} cannot translate (large-v3-turbo was trained without translation data)"
    return None


@dataclass(frozen=True)
class Region:
    start_s: float
    end_s: float
    text: str  # the original-language text (kept for reference and tests)


@dataclass(frozen=True)
class Translated:
    """One segment of English from the translate task, in media time."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class EnglishSegment:
    start_s: float
    end_s: float
    text: str
    speaker: str | None


MAX_PAUSE_S = 2.0


def regions(segments: Sequence[dict], max_s: float = MAX_REGION_S, max_pause_s: float = MAX_PAUSE_S) -> list[Region]:
    """Speech windows from one file's ``segments`` rows (start_s, end_s, text)."""
    out: list[Region] = []
    cur: list[dict] = []

    def close():
        if cur:
            out.append(
                Region(cur[0]["start_s"], max(s["end_s"] for s in cur), " ".join(s["text"].strip() for s in cur))
            )

    for seg in sorted(segments, key=lambda s: (s["start_s"], s.get("segment_id", 0))):
        if cur and (seg["end_s"] - cur[0]["start_s"] > max_s or seg["start_s"] - cur[-1]["end_s"] >= max_pause_s):
            close()
            cur = []
        cur.append(seg)
    close()
    return out


def attribute(pieces: Sequence[Translated], segments: Sequence[dict]) -> list[EnglishSegment]:
    """Each English piece gets the speaker speaking most during it in ``segments``."""
    from .attribute import dominant_speaker
    from .diarize import Turn

    turns = [Turn(s["start_s"], s["end_s"], s["speaker"]) for s in segments if s.get("speaker")]
    return [
        EnglishSegment(p.start_s, p.end_s, p.text, dominant_speaker(p.start_s, p.end_s, turns) if turns else None)
        for p in pieces
    ]


class Translator:
    """Whisper's translate task over speech regions. Loads on first use; a context manager
    (freed on exit)."""

    def __init__(self, model: ResolvedModel, options: AsrOptions):
        self.model = model
        self.options = options
        self._whisper = None
        self.reason = cannot_translate(model.spec)

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc) -> None:
        self._whisper = None
        free_device_memory()

    @property
    def loaded(self) -> bool:
        return self._whisper is not None

    def _load(self):
        if self.reason:
            raise CannotTranslate(self.reason)
        if self._whisper is None:
            from faster_whisper import WhisperModel

            o = self.options
            log.info(
                "loading translation model %s (%s) on %s/%s", self.model.spec, self.model.path, o.device, o.compute_type
            )
            self._whisper = WhisperModel(
                self.model.path,
                device=o.device,
                device_index=o.device_index,
                compute_type=o.compute_type,
                cpu_threads=o.threads,
                local_files_only=self.model.is_local,
                use_auth_token=o.hf_token,
            )
            if not self._whisper.model.is_multilingual:
                self.reason = f"{self.model.spec} is an English-only Whisper model: it cannot translate"
                self._whisper = None
                raise CannotTranslate(self.reason)
        return self._whisper

    def translate(self, samples: np.ndarray, spans: Sequence[Region], language: str | None) -> list[Translated]:
        """English segments in media time for the regions of ``samples`` (16 kHz mono
        float32); times are clamped to their region."""
        whisper = self._load()
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        out = []
        for i, r in enumerate(spans):
            lo = max(r.start_s - PAD_S, spans[i - 1].end_s if i else 0.0, 0.0)
            hi = min(r.end_s + PAD_S, spans[i + 1].start_s if i + 1 < len(spans) else r.end_s + PAD_S)
            chunk = samples[int(lo * SAMPLE_RATE) : max(int(lo * SAMPLE_RATE) + 1, int(hi * SAMPLE_RATE))]
            segs, _ = whisper.transcribe(
                chunk,
                task="translate",
                language=language,
                beam_size=self.options.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                **DECODING,
            )
            for s in segs:
                text = s.text.strip()
                if not text:
                    continue
                a = min(max(lo + float(s.start), r.start_s), r.end_s)
                b = min(max(lo + float(s.end), a), r.end_s)
                out.append(Translated(round(a, 3), round(b, 3), text))
        return out

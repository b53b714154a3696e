"""The model stack, for the forkserver of a run with model steps (see the package's docstring)."""

from __future__ import annotations

from . import import_all

MODELS = (
    "torch",
    "pyannote.audio",  # Lightning and torchmetrics come with it: 4.5 s
    "whisperx",
    "faster_whisper",
    "ctranslate2",
    "sentence_transformers",
    "opentranscribe_pipeline.speech.asr",
    "opentranscribe_pipeline.speech.diarize",
    "opentranscribe_pipeline.speech.encoders.campplus",
)

import_all(MODELS)

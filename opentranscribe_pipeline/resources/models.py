"""Model configuration: packaged offline defaults, a hub id or a local directory in production."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..speech.asr import AsrOptions, Transcriber, resolve_device
from ..speech.models import ResolvedModel, resolve_asr_model


class AsrModelResource(dg.ConfigurableResource):
    """WhisperX ASR. ``model``: ``packaged:base`` (default), ``packaged:tiny.en``, a local
    CTranslate2 directory, or a Hugging Face id / size name (needs hub access and, for
    gated models, ``hf_token``). Unset ``model`` falls back to ``OPENTRANSCRIBE_ASR_MODEL``."""

    model: str | None = Field(default=None, description="packaged:base | packaged:tiny.en | /dir | hub id")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    device_index: int = 0
    compute_type: str = Field(default="default", description="default: float16 on cuda, int8 on cpu")
    batch_size: int = Field(default=8, description="VAD chunks per forward pass; lower it on OOM")
    language: str | None = Field(default=None, description="force a language; default: detect per file")
    beam_size: int = 5
    threads: int = Field(default=0, description="CPU threads for CTranslate2 (0 = its default)")
    align_model: str | None = Field(
        default=None,
        description="wav2vec2 alignment model (hub id, local dir, or 'default'); unset: Whisper cross-attention timings",
    )
    hf_token: str | None = Field(default=None, description="Hugging Face token; pass as EnvVar('HF_TOKEN')")
    cache_dir: str | None = Field(default=None, description="where packaged split models are joined")

    def resolved(self) -> ResolvedModel:
        from pathlib import Path

        return resolve_asr_model(self.model or settings.asr_model(), Path(self.cache_dir) if self.cache_dir else None)

    def options(self) -> AsrOptions:
        device = resolve_device(self.device)
        compute_type = self.compute_type
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        return AsrOptions(
            device=device,
            device_index=self.device_index,
            compute_type=compute_type,
            batch_size=self.batch_size,
            language=self.language,
            beam_size=self.beam_size,
            threads=self.threads,
            align_model=self.align_model,
            hf_token=self.hf_token,
        )

    def transcriber(self) -> Transcriber:
        return Transcriber(self.resolved(), self.options())

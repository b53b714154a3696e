"""Model configuration: packaged offline defaults, a hub id or a local directory in production.

Every field holds the value a run uses: the model fields default to the settings (the
environment's ``OPENTRANSCRIBE_*`` or the packaged default), and the code location builds the
resources with :meth:`from_settings`, so the Dagster UI shows them, with ``HF_TOKEN`` as a
``dg.EnvVar`` (shown by name, resolved when a run starts) when it is set. ``device`` ``auto``
and ``compute_type`` ``default`` stay symbolic: they resolve on the machine that runs the step
(``speech/device.py``), and the run's metadata records what they became.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .. import settings
from ..speakers.params import ClusterParams
from ..speech.align import timing_method
from ..speech.asr import AsrOptions, Transcriber
from ..speech.device import device_and_compute_type, resolve_device
from ..speech.diarize import DiarizationOptions, Diarizer, embedding_model_name, pipeline_version
from ..speech.models import ResolvedModel, quiet_model_logs, resolve_asr_model


def _hf_token() -> dict:
    """``hf_token=EnvVar("HF_TOKEN")`` when the variable is set (an unset EnvVar fails the run)."""
    return {"hf_token": dg.EnvVar("HF_TOKEN")} if settings.env("HF_TOKEN") else {}


def _translation_model() -> str:
    return settings.translation_model() or settings.asr_model()


class AsrModelResource(dg.ConfigurableResource):
    """WhisperX ASR. ``model``: ``packaged:base`` (default), ``packaged:tiny.en``, a local
    CTranslate2 directory, or a Hugging Face id / size name (needs hub access and, for
    gated models, ``hf_token``). Defaults to ``OPENTRANSCRIBE_ASR_MODEL``."""

    model: str = Field(
        default_factory=settings.asr_model,
        description="packaged:base | packaged:tiny.en | /dir | hub id (default: OPENTRANSCRIBE_ASR_MODEL)",
    )
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
    hf_token: str | None = Field(default=None, description="Hugging Face token: EnvVar('HF_TOKEN')")
    cache_dir: str | None = Field(default=None, description="where packaged split models are joined")

    @classmethod
    def from_settings(cls) -> AsrModelResource:
        """The code location's resource: the model from the settings, ``HF_TOKEN`` as EnvVar."""
        return cls(model=settings.asr_model(), **_hf_token())

    def resolved(self) -> ResolvedModel:
        from pathlib import Path

        return resolve_asr_model(self.model, Path(self.cache_dir) if self.cache_dir else None)

    def options(self) -> AsrOptions:
        device, compute_type = device_and_compute_type(self.device, self.compute_type)
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

    def timing_method(self) -> str:
        """How word timings are obtained: wav2vec2 alignment when configured, else Whisper's
        cross-attention."""
        return timing_method(self.align_model)

    def model_version(self) -> str:
        """Changes whenever the transcripts could change: outputs of another version are stale."""
        from ..assets.versions import STEP_VERSIONS  # the step's code: a fix that changes transcripts redoes files

        return f"{self.resolved().version}|{self.timing_method()}|{STEP_VERSIONS['transcribe']}"

    def model_columns(self) -> dict[str, str]:
        """The ``transcripts`` columns that name the model (a ``StageModel``)."""
        return {"asr_model": self.resolved().spec, "timing_method": self.timing_method()}

    def load(self) -> Transcriber:
        """The model, loaded on ``with`` and freed after (a ``StageModel``)."""
        _apply_log_settings()
        return Transcriber(self.resolved(), self.options())


class DiarizationModelResource(dg.ConfigurableResource):
    """pyannote.audio diarization. ``pipeline``: ``packaged`` (offline default: the bundled
    segmentation model + 3D-Speaker's CAM++ embeddings), ``packaged-ge2e`` (the same with
    resemblyzer's GE2E, the default before CAM++), a Hugging Face id such as
    ``pyannote/speaker-diarization-community-1`` (with ``hf_token``), or a local directory
    holding the pipeline's ``config.yaml``. Defaults to ``OPENTRANSCRIBE_DIARIZATION``."""

    pipeline: str = Field(
        default_factory=settings.diarization_pipeline,
        description="packaged | packaged-ge2e | hub id | /local/dir (default: OPENTRANSCRIBE_DIARIZATION)",
    )
    device: str = Field(default="auto", description="auto, cpu or cuda")
    hf_token: str | None = Field(default=None, description="Hugging Face token: EnvVar('HF_TOKEN')")
    num_speakers: int | None = Field(default=None, description="exact number of speakers per file, when known")
    min_speakers: int | None = Field(default=None, description="lower bound on speakers per file")
    max_speakers: int | None = Field(default=None, description="upper bound on speakers per file")
    segmentation_batch_size: int = Field(default=32, description="lower it on out-of-memory")
    embedding_batch_size: int = Field(default=32, description="lower it on out-of-memory")

    @classmethod
    def from_settings(cls) -> DiarizationModelResource:
        """The code location's resource: the pipeline from the settings, ``HF_TOKEN`` as EnvVar."""
        return cls(pipeline=settings.diarization_pipeline(), **_hf_token())

    def options(self) -> DiarizationOptions:
        return DiarizationOptions(
            pipeline=self.pipeline,
            device=resolve_device(self.device),
            hf_token=self.hf_token,
            num_speakers=self.num_speakers,
            min_speakers=self.min_speakers,
            max_speakers=self.max_speakers,
            segmentation_batch_size=self.segmentation_batch_size,
            embedding_batch_size=self.embedding_batch_size,
        )

    def embedding_model(self) -> str:
        return embedding_model_name(self.options().pipeline)

    def model_version(self) -> str:
        """Changes whenever the turns or embeddings could change: outputs of another version are stale."""
        o = self.options()
        knobs = f"n={o.num_speakers},min={o.min_speakers},max={o.max_speakers}"
        from ..assets.versions import STEP_VERSIONS  # the step's code: a fix that changes turns redoes files

        return f"{pipeline_version(o.pipeline)}|{knobs}|{self.embedding_model()}|{STEP_VERSIONS['diarize']}"

    def model_columns(self) -> dict[str, str]:
        """The ``diarization`` columns that name the models (a ``StageModel``)."""
        return {"pipeline": self.options().pipeline, "embedding_model": self.embedding_model()}

    def load(self) -> Diarizer:
        """The pipeline, loaded on ``with`` and freed after (a ``StageModel``)."""
        _apply_log_settings()
        return Diarizer(self.options())


def _apply_log_settings() -> None:
    if settings.quiet_model_logs():
        quiet_model_logs()


class SpeakerClusteringResource(dg.ConfigurableResource):
    """Thresholds of the archive-wide speaker clustering (cosine similarity of unit vectors).

    Unset (the default), each takes the value calibrated for the embedding model that made
    the vectors (``ClusterParams.for_model``: measured on real speech for the packaged CAM++
    and GE2E encoders, README "Speakers on real voices", ``benchmarks/speakers_quality.py
    --real``), chosen so that a false merge is rarer than a missed join. Production
    embeddings (WeSpeaker) need their own calibration (``speakers calibrate``)."""

    threshold: float | None = Field(
        default=None, description="similarity needed to join a voice with >= full_speech_s of speech"
    )
    short_threshold: float | None = Field(
        default=None, description="similarity needed with short_speech_s of speech or less"
    )
    full_speech_s: float | None = Field(default=None, description="speech from which `threshold` applies")
    short_speech_s: float | None = Field(default=None, description="speech up to which `short_threshold` applies")
    min_speech_s: float | None = Field(default=None, description="a speaker with less speech never joins a voice")
    merge_threshold: float | None = Field(default=None, description="centroids this similar are merged")
    accept_threshold: float | None = Field(default=None, description="suggest a name with confidence 'high'")
    suggest_threshold: float | None = Field(default=None, description="suggest a name with confidence 'medium'")
    iterations: int = 3

    def params(self, model: str | None = None) -> ClusterParams:
        """``model``'s calibrated thresholds, with those set on this resource instead."""
        import dataclasses

        names = (
            "threshold",
            "short_threshold",
            "full_speech_s",
            "short_speech_s",
            "min_speech_s",
            "merge_threshold",
            "accept_threshold",
            "suggest_threshold",
        )
        overrides = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        return dataclasses.replace(ClusterParams.for_model(model), iterations=self.iterations, **overrides)


class TranslationModelResource(dg.ConfigurableResource):
    """Whisper's translate task for ``segments_en``. ``model``: a multilingual Whisper model
    (``packaged:base``, a CTranslate2 directory or a hub id); defaults to
    ``OPENTRANSCRIBE_TRANSLATION_MODEL``, else the ASR model. ``translate``: ``never``
    (English media copied through, others not translated), ``non_english`` (default) or
    ``always`` (English media re-spoken through the translate task too)."""

    model: str = Field(
        default_factory=_translation_model,
        description="multilingual Whisper model (default: OPENTRANSCRIBE_TRANSLATION_MODEL, else the ASR model)",
    )
    translate: str = Field(default="non_english", description="never | non_english | always")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    device_index: int = 0
    compute_type: str = Field(default="default", description="default: float16 on cuda, int8 on cpu")
    beam_size: int = 5
    threads: int = Field(default=0, description="CPU threads for CTranslate2 (0 = its default)")
    hf_token: str | None = Field(default=None, description="Hugging Face token: EnvVar('HF_TOKEN')")
    cache_dir: str | None = Field(default=None, description="where packaged split models are joined")

    @classmethod
    def from_settings(cls) -> TranslationModelResource:
        """The code location's resource: the model from the settings, ``HF_TOKEN`` as EnvVar."""
        return cls(model=_translation_model(), **_hf_token())

    def spec(self) -> str:
        return self.model

    def mode(self) -> str:
        from ..speech.translate import MODES

        if self.translate not in MODES:
            raise dg.Failure(f"translate must be one of {', '.join(MODES)}, not {self.translate!r}")
        return self.translate

    def resolved(self) -> ResolvedModel:
        from pathlib import Path

        return resolve_asr_model(self.spec(), Path(self.cache_dir) if self.cache_dir else None)

    def options(self) -> AsrOptions:
        device, compute_type = device_and_compute_type(self.device, self.compute_type)
        return AsrOptions(
            device=device,
            device_index=self.device_index,
            compute_type=compute_type,
            beam_size=self.beam_size,
            threads=self.threads,
            hf_token=self.hf_token,
        )

    def model_version(self) -> str:
        """Changes whenever the English text could change (model, mode or decoding)."""
        from ..speech.models import asr_model_version
        from ..speech.translate import DECODING_VERSION

        return f"{asr_model_version(self.spec())}|translate|{self.mode()}|{DECODING_VERSION}"

    def model_columns(self) -> dict[str, str]:
        """The ``translations`` columns that name the model (a ``StageModel``)."""
        return {"translation_model": self.spec(), "translate_mode": self.mode()}

    def load(self):
        """A :class:`~..speech.translate.Translator` that loads the model on first use (a
        ``StageModel``): English-only batches never load it."""
        from ..speech.translate import Translator, cannot_translate

        spec = self.spec()
        if cannot_translate(spec):  # nothing to resolve or join: every file records why
            return Translator(ResolvedModel(spec, spec, spec, True), self.options())
        return Translator(self.resolved(), self.options())

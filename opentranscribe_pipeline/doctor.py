"""``opentranscribe doctor``: is this machine ready to run the pipeline?

One :class:`Check` per part a run needs, each answering ok or the problem and how to fix
it. Secrets are named (the variable that holds them), never shown: a check's text is built
from settings names, endpoints, buckets and paths only.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import settings

# what a run imports; their absence is the first thing a broken install shows
REQUIRED_PACKAGES = (
    "dagster",
    "dagster-postgres",
    "dagster-aws",
    "whisperx",
    "faster-whisper",
    "pyannote.audio",
    "torch",
    "polars",
    "pandera",
    "av",
    "boto3",
    "resemblyzer",
)
MIN_FREE_CACHE_GB = 2.0  # a joined Whisper model plus room for a hub model
GPU_MEMORY_PER_BATCH_GB = 0.5  # rough working memory of one VAD chunk in a float16 batch


@dataclass
class Check:
    name: str
    ok: bool
    detail: str  # ok: what was found; not ok: the problem
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name:10s} {self.detail}"
        return f"FAIL  {self.name:10s} {self.detail}" + (f" -> fix: {self.fix}" if self.fix else "")


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        return Check("python", False, f"Python {version}", "use Python 3.11 or 3.12")
    missing = []
    for dist in REQUIRED_PACKAGES:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        return Check("python", False, f"missing packages: {', '.join(missing)}", "pip install -e . (or the image)")
    dagster = importlib.metadata.version("dagster")
    return Check("python", True, f"Python {version}, dagster {dagster}, {len(REQUIRED_PACKAGES)} packages present")


def check_models() -> Check:
    """The configured ASR model and diarization pipeline exist (no weights are loaded)."""
    from .speech.encoders import EncoderNotAvailable, encoder_for
    from .speech.models import PACKAGED_ASR, PACKAGED_PREFIX, _package_dir

    asr = settings.asr_model()
    found = []
    try:
        if asr.startswith(PACKAGED_PREFIX):
            name = asr[len(PACKAGED_PREFIX) :]
            if name not in PACKAGED_ASR:
                return Check("models", False, f"unknown packaged model {asr!r}", f"one of {sorted(PACKAGED_ASR)}")
            for dist in PACKAGED_ASR[name]:
                _package_dir(dist)
            found.append(f"ASR {asr}")
        elif Path(asr).expanduser().is_dir():
            if not (Path(asr).expanduser() / "model.bin").exists():
                return Check(
                    "models", False, f"ASR directory {asr} holds no model.bin", "point it at a CTranslate2 model"
                )
            found.append(f"ASR directory {asr}")
        elif asr.startswith(("/", "./", "~")):
            return Check(
                "models",
                False,
                f"ASR model directory {asr} does not exist",
                "fix OPENTRANSCRIBE_ASR_MODEL (or --model), or use packaged:base",
            )
        else:
            found.append(f"ASR hub id {asr} (needs hub access or a filled HF cache)")
    except Exception as exc:  # ModelNotAvailable: a package missing
        return Check("models", False, str(exc), "pip install -e .")
    pipeline = settings.diarization_pipeline()
    encoder = encoder_for(pipeline)
    if encoder is not None:  # a packaged pipeline: its speaker encoder's package is there
        try:
            encoder.check()
        except EncoderNotAvailable as exc:
            return Check("models", False, str(exc), "pip install -e .")
        found.append(f"diarization {pipeline}")
    elif Path(pipeline).expanduser().exists():
        if not (Path(pipeline).expanduser() / "config.yaml").exists():
            return Check("models", False, f"diarization directory {pipeline} has no config.yaml", "a pyannote pipeline")
        found.append(f"diarization directory {pipeline}")
    elif pipeline.startswith(("/", "./", "~")):
        return Check(
            "models",
            False,
            f"diarization pipeline directory {pipeline} does not exist",
            "fix OPENTRANSCRIBE_DIARIZATION, or use packaged",
        )
    else:
        token = "HF_TOKEN set" if settings.env("HF_TOKEN") else "HF_TOKEN not set (gated pipelines need it)"
        found.append(f"diarization hub id {pipeline}, {token}")
    return Check("models", True, "; ".join(found))


def check_device(device: str = "auto", compute_type: str = "default", batch_size: int = 8) -> Check:
    """What the models would run on, against the compute type and batch size asked for."""
    import torch

    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        return Check("device", False, "device cuda asked for, but no CUDA device is visible", "--device cpu or auto")
    on = "cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu"
    if compute_type == "default":
        compute_type = "float16" if on == "cuda" else "int8"
    if on == "cpu":
        if compute_type == "float16":
            return Check("device", False, "compute type float16 on CPU", "--compute-type int8 (or float32) on CPU")
        return Check("device", True, f"CPU, compute type {compute_type}, batch size {batch_size} (no CUDA visible)")
    props = torch.cuda.get_device_properties(0)
    total_gb = props.total_memory / 2**30
    need_gb = 1.5 + batch_size * GPU_MEMORY_PER_BATCH_GB * (2 if compute_type == "float32" else 1)
    detail = f"{torch.cuda.device_count()} CUDA device(s), {props.name} {total_gb:.1f} GiB, {compute_type}, batch {batch_size}"
    if need_gb > total_gb:
        return Check("device", False, f"{detail}: about {need_gb:.1f} GiB needed", "lower --batch-size")
    return Check("device", True, detail)


def check_instance() -> Check:
    """DAGSTER_HOME's instance: its storage answers and its schema is current."""
    import dagster as dg

    home = settings.dagster_home()
    if home is None:
        return Check("instance", False, "DAGSTER_HOME is not set", "export DAGSTER_HOME=/path (holding dagster.yaml)")
    if not (home / "dagster.yaml").exists():
        return Check("instance", False, f"{home}/dagster.yaml is missing", "copy dagster.yaml (or deploy/dagster.yaml)")
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            storage = type(instance.run_storage).__name__
            instance.get_runs(limit=1)
            behind = _schema_behind(instance)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(
            "instance",
            False,
            f"instance at {home} cannot be opened: {type(exc).__name__}: {first[:200]}",
            "start the database named in dagster.yaml, or fix its host/port/credentials",
        )
    kind = "PostgreSQL" if "Postgres" in storage else "SQLite" if "Sqlite" in storage else storage
    if behind:
        return Check("instance", False, f"{kind} instance at {home}: schema not migrated", "dagster instance migrate")
    return Check("instance", True, f"{kind} instance at {home}, schema current")


def _schema_behind(instance) -> bool:
    """Whether the run storage's alembic revision is behind the installed Dagster's."""
    from dagster._core.storage.sql import get_alembic_config

    storage = instance.run_storage
    storage = getattr(storage, "_storage", storage)
    import_path = sys.modules[type(storage).__module__].__file__
    try:
        alembic_config = get_alembic_config(import_path)
        with storage.connect() as conn:
            from dagster._core.storage.sql import check_alembic_revision

            db_revision, head_revision = check_alembic_revision(alembic_config, conn)
    except Exception:
        return False  # a storage without alembic (in memory): nothing to migrate
    return db_revision is not None and head_revision is not None and db_revision != head_revision


def _credentials_note(s3) -> str:
    if s3.access_key_id and s3.secret_access_key:
        return "credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    return "no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default credential chain)"


def check_warehouse(root: str) -> Check:
    """Reachable and writable: one listing, one small object written and removed."""
    from .storage import S3Options, StorageError, Warehouse
    from .storage.retries import RetryPolicy

    s3 = S3Options.from_env()
    try:
        wh = Warehouse(root, s3)
        wh.backend.policy = RetryPolicy(budget_s=min(settings.storage_retry_s(), 5.0))
        wh.check_reachable()
        probe = wh.path("_doctor", f"probe-{uuid.uuid4().hex}")
        wh.put_bytes(probe, b"ok")
        wh.remove(probe)
    except StorageError as exc:
        where = f" ({_credentials_note(s3)})" if root.startswith("s3") else ""
        return Check("warehouse", False, f"{exc}{where}", _warehouse_fix(exc))
    if wh.is_local:
        return Check("warehouse", True, f"{wh.root_uri} writable")
    return Check("warehouse", True, f"{wh.root_uri} at {wh.endpoint} writable, {_credentials_note(s3)}")


def _warehouse_fix(exc) -> str:
    name = type(exc).__name__
    return {
        "StorageUnreachable": "start the S3 server or fix AWS_ENDPOINT_URL",
        "NoSuchBucket": "create the bucket or fix OPENTRANSCRIBE_WAREHOUSE / --warehouse",
        "AccessDenied": "fix AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the bucket policy",
        "NotADirectory": "point the warehouse at a directory",
        "DiskFull": "free space on the warehouse's disk",
    }.get(name, "see the message")


def check_search(root: str) -> Check:
    """OpenSearch when ``OPENSEARCH_URL`` is set (cluster health), else LanceDB's folder
    under the warehouse (``<root>/_search/``) writable."""
    url = settings.env("OPENSEARCH_URL")
    if url:
        from urllib.parse import urlsplit

        from opensearchpy import OpenSearch

        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"  # no user:password
        try:
            client = OpenSearch(url, timeout=5, max_retries=0)
            health = client.cluster.health()
        except Exception as exc:
            return Check(
                "search",
                False,
                f"OpenSearch at {shown} unreachable: {type(exc).__name__}",
                "start it or fix OPENSEARCH_URL",
            )
        return Check("search", True, f"OpenSearch at {shown}, cluster {health.get('status', '?')}")
    from .storage import StorageError, Warehouse
    from .storage.retries import RetryPolicy

    try:
        wh = Warehouse(root, _s3())
        wh.backend.policy = RetryPolicy(budget_s=min(settings.storage_retry_s(), 5.0))
        wh.check_reachable()  # before any write: some S3 servers create a missing bucket on PUT
        probe = wh.path("_search", f".doctor-{uuid.uuid4().hex}")
        wh.put_bytes(probe, b"ok")
        wh.remove(probe)
    except StorageError as exc:
        return Check("search", False, f"LanceDB folder {root}/_search not writable: {exc}", _warehouse_fix(exc))
    return Check("search", True, f"LanceDB under {root}/_search writable (set OPENSEARCH_URL for OpenSearch)")


def _s3():
    from .storage import S3Options

    return S3Options.from_env()


def check_gpu_pool() -> Check:
    """The ``gpu`` pool's limit should be the number of GPUs (1 on a CPU-only host)."""
    import dagster as dg
    import torch

    home = settings.dagster_home()
    if home is None or not (home / "dagster.yaml").exists():
        return Check("gpu pool", False, "no instance to read the pool from", "set DAGSTER_HOME first")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = max(1, gpus)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            info = instance.event_log_storage.get_concurrency_info(settings.GPU_POOL)
            limit = info.limit
            if limit is None:  # slots not initialised yet: the instance's default applies
                limit = info.slot_count or instance.global_op_concurrency_default_limit
    except Exception as exc:
        return Check("gpu pool", False, f"cannot read the pool: {type(exc).__name__}", "see the instance line")
    if limit is None:
        return Check(
            "gpu pool",
            False,
            "no limit on the gpu pool: model steps of concurrent runs share a device",
            f"dagster instance concurrency set {settings.GPU_POOL} {want}",
        )
    if limit != want:
        why = "model steps would share a device" if limit > want else "GPUs would sit idle"
        return Check(
            "gpu pool",
            False,
            f"limit {limit} for {gpus} GPU(s): {why}",
            f"dagster instance concurrency set {settings.GPU_POOL} {want}",
        )
    return Check("gpu pool", True, f"limit {limit} for {gpus} GPU(s)")


def check_cache_disk(min_free_gb: float = MIN_FREE_CACHE_GB) -> Check:
    cache = settings.model_cache_dir()
    existing = cache
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free_gb = shutil.disk_usage(existing).free / 2**30
    if free_gb < min_free_gb:
        return Check(
            "disk",
            False,
            f"{free_gb:.1f} GiB free for the model cache {cache} (needs {min_free_gb:g})",
            "free space or set OPENTRANSCRIBE_CACHE",
        )
    return Check("disk", True, f"{free_gb:.1f} GiB free for the model cache {cache}")


def run_checks(
    warehouse: str | None = None, device: str = "auto", compute_type: str = "default", batch_size: int = 8
) -> list[Check]:
    root = warehouse or settings.warehouse_root()
    checks: list[Callable[[], Check]] = [
        check_python,
        check_models,
        lambda: check_device(device, compute_type, batch_size),
        check_instance,
        lambda: check_warehouse(root),
        lambda: check_search(root),
        check_gpu_pool,
        check_cache_disk,
    ]
    results = []
    for fn in checks:
        try:
            results.append(fn())
        except Exception as exc:  # a check that breaks is a failed check, never a traceback
            name = getattr(fn, "__name__", "check").removeprefix("check_")
            results.append(Check(name, False, f"{type(exc).__name__}: {str(exc)[:200]}"))
    return results

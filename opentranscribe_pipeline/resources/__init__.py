from .models import AsrModelResource, DiarizationModelResource, SpeakerClusteringResource
from .storage import WarehouseResource

__all__ = ["AsrModelResource", "DiarizationModelResource", "SpeakerClusteringResource", "WarehouseResource"]

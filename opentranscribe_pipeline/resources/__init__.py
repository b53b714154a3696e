from .models import AsrModelResource
from .storage import WarehouseResource

__all__ = ["AsrModelResource", "WarehouseResource"]

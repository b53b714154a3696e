from .media import ingest
from .transcripts import transcribe

__all__ = ["ingest", "transcribe"]

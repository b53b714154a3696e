from .media import ingest
from .speakers import attribute_speakers, cluster_speakers, diarize, speaker_profiles
from .transcripts import transcribe

__all__ = ["attribute_speakers", "cluster_speakers", "diarize", "ingest", "speaker_profiles", "transcribe"]

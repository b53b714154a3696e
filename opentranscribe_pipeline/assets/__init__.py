"""One module per stage: media, transcription, diarization, attribution, clustering.

Model stages (transcription, diarization) are built on the per-file model step in
``modelstep.py``; checks are generated from ``schemas.py`` by ``checks.py``; ``versions.py``
turns the configured models into code versions."""

from .attribution import attribute_speakers
from .clustering import cluster_speakers, speaker_profiles
from .diarization import diarize
from .media import ingest
from .transcription import transcribe

__all__ = ["attribute_speakers", "cluster_speakers", "diarize", "ingest", "speaker_profiles", "transcribe"]

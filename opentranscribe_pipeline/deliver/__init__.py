"""Deliverables, Dagster-free: subtitle cues and SRT/WebVTT/TXT/JSON documents
(:mod:`.subtitles`, :mod:`.documents`) and conversation analytics (:mod:`.stats`). The assets
(``assets/exports.py``, ``assets/stats.py``) and ``opentranscribe export`` are thin front ends
over these. The English translation is a model: ``speech/translate.py``."""

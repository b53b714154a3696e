"""Deliverables, Dagster-free: subtitle cues and SRT/WebVTT/TXT/JSON documents
(:mod:`.subtitles`, :mod:`.documents`), English translation (:mod:`.translate`) and
conversation analytics (:mod:`.stats`). The assets (``assets/exports.py``,
``assets/translation.py``, ``assets/stats.py``) and ``opentranscribe export`` are thin
front ends over these."""

"""Diarization error rate of turns against reference turns, for the tests that judge the
diarizer (pyannote.metrics, collar 0.25 s, as ``benchmarks/speakers_quality.py`` reports it)."""

from __future__ import annotations


def der(turns, truth_turns, collar: float = 0.25) -> float:
    """``turns``: objects with ``start_s``, ``end_s``, ``speaker`` (``Diarizer`` turns);
    ``truth_turns``: dicts with the same keys (truth.json)."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for t in truth_turns:
        ref[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in turns:
        hyp[Segment(t.start_s, t.end_s)] = t.speaker
    return DiarizationErrorRate(collar=collar)(ref, hyp)


def der_parts(turns, truth_turns, collar: float = 0.25) -> dict[str, float]:
    """``der``'s missed detection, false alarm and confusion, each a share of the reference."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for t in truth_turns:
        ref[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    for t in turns:
        hyp[Segment(t.start_s, t.end_s)] = t.speaker
    d = DiarizationErrorRate(collar=collar)(ref, hyp, detailed=True)
    return {k: d[k] / d["total"] for k in ("missed detection", "false alarm", "confusion")}

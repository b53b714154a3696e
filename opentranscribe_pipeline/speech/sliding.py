"""pyannote's sliding-window inference with SincNet's first layer computed once per stretch of
audio instead of once per overlapping window (no Dagster in here).

A PyanNet segmentation model (WhisperX's VAD checkpoint, pyannote's segmentation-3.0) starts
with 80 sinc band-pass filters of 251 taps at a stride of 10 samples over each window, and the
windows overlap ten times over (a step of a tenth of the window), so each sample goes through
those filters ten times. That layer is about a quarter of the model's work on CPU (the LSTM is
most of the rest).

The filters are linear and shift-invariant, and what comes before them only rescales each
window (``wav_norm1d``, an instance norm with one mean and one scale per window). So for each
batch of windows the filters run once over the stretch of audio the batch covers, each
window's frames are its slice of that, and the window's own normalisation is applied to the
filtered frames instead of to the samples::

    conv(gamma * (x - mean) / std + beta) = (gamma / std) * conv(x) + (beta - gamma * mean / std) * sum(filter)

Everything after that (abs, pooling, the instance norms, the later convolutions, the LSTM, the
classifier) is pyannote's own modules on each window, as before. The scores equal pyannote's
``Inference`` up to float rounding (tests/speech/test_sliding.py holds them within 1e-4 of it
and their speech segments identical); the windows, their order and the zero padding of the
last one are pyannote's own (``Inference.slide``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from pyannote.audio import Inference


def shares_first_layer(model) -> bool:
    """``model`` is a PyanNet whose SincNet this module knows how to split after its first layer."""
    sincnet = getattr(model, "sincnet", None)
    return (
        type(model).__name__ == "PyanNet"
        and sincnet is not None
        and len(sincnet.conv1d) == 3
        and getattr(sincnet.conv1d[0], "padding", None) == 0
        and not getattr(sincnet.conv1d[0], "is_pinv", True)
        and hasattr(model, "lstm")
    )


class SharedFirstLayerInference(Inference):
    """pyannote's ``Inference`` (sliding windows, ``skip_aggregation`` or not) whose model's
    first SincNet layer runs once over each batch's stretch of audio (module docstring). Any
    other model, or a step that is not a whole number of the filters' stride, runs as
    pyannote's."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self._waveform: torch.Tensor | None = None
        self._step_size = 0
        self._next_chunk = 0

    def slide(self, waveform, sample_rate, hook):
        step_size = round(self.step * sample_rate)
        if shares_first_layer(self.model) and step_size % self.model.sincnet.stride == 0 and waveform.shape[0] == 1:
            self._waveform, self._step_size, self._next_chunk = waveform, step_size, 0
        try:
            return super().slide(waveform, sample_rate, hook)
        finally:
            self._waveform = None

    def infer(self, chunks: torch.Tensor):
        if self._waveform is None:
            return super().infer(chunks)
        first = self._next_chunk
        self._next_chunk += chunks.shape[0]
        model = self.model
        with torch.inference_mode():
            features = self._sincnet(chunks.to(self.device), first)
            # features is None: not the windows slide() cut (never expected), pyannote's way
            outputs = model(chunks.to(self.device)) if features is None else self._after_sincnet(features)

        def convert(output: torch.Tensor, conversion, **kwargs):
            return conversion(output).cpu().numpy()

        from pyannote.audio.utils.multi_task import map_with_specifications

        return map_with_specifications(model.specifications, convert, outputs, self.conversion)

    def _sincnet(self, chunks: torch.Tensor, first: int) -> torch.Tensor | None:
        """SincNet's output for ``chunks``, windows ``first``, ``first + 1``, ... of the file."""
        sincnet = self.model.sincnet
        stride, step = sincnet.stride, self._step_size
        num_chunks, _, window = chunks.shape
        start = first * step
        end = start + (num_chunks - 1) * step + window
        stretch = self._waveform[:, start:end].to(chunks.device)
        if stretch.shape[1] < end - start:  # the last window is zero-padded (Inference.slide)
            stretch = F.pad(stretch, (0, end - start - stretch.shape[1]))
        # the windows are this stretch's (a cheap check of both ends of the batch)
        if not (torch.equal(stretch[0, :64], chunks[0, 0, :64]) and torch.equal(stretch[0, -64:], chunks[-1, 0, -64:])):
            return None
        encoder = sincnet.conv1d[0]
        filters = encoder.filterbank.filters()  # (80, 1, 251)
        filtered = F.conv1d(stretch[None], filters, stride=stride)[0]  # (80, frames of the stretch)
        frames = (window - filters.shape[-1]) // stride + 1
        # wav_norm1d per window, moved past the (linear) filters: each window's slice of the
        # stretch, scaled and shifted (one contiguous slice at a time: an elementwise op on
        # the overlapping unfold() view is twice as slow, and leaves a layout pooling is slow on)
        norm = sincnet.wav_norm1d
        mean = chunks.mean(dim=(1, 2))
        var = chunks.var(dim=(1, 2), unbiased=False)
        scale = norm.weight[0] / torch.sqrt(var + norm.eps)
        shift = (norm.bias[0] - scale * mean)[:, None] * filters.sum(dim=-1)[:, 0][None]  # (chunk, filter)
        offset = step // stride
        outputs = torch.empty((num_chunks, filters.shape[0], frames), dtype=filtered.dtype, device=filtered.device)
        for i in range(num_chunks):
            window_frames = filtered[:, i * offset : i * offset + frames]
            torch.addcmul(shift[i][:, None], window_frames, scale[i], out=outputs[i])
        outputs = outputs.abs_()
        outputs = F.leaky_relu(sincnet.norm1d[0](sincnet.pool1d[0](outputs)))
        for conv1d, pool1d, norm1d in zip(sincnet.conv1d[1:], sincnet.pool1d[1:], sincnet.norm1d[1:]):
            outputs = F.leaky_relu(norm1d(pool1d(conv1d(outputs))))
        return outputs

    def _after_sincnet(self, outputs: torch.Tensor) -> torch.Tensor:
        """The rest of ``PyanNet.forward`` (pyannote.audio 4.0), from SincNet's output."""
        model = self.model
        outputs = rearrange(outputs, "batch feature frame -> batch frame feature")
        if model.hparams.lstm["monolithic"]:
            outputs, _ = model.lstm(outputs)
        else:
            for i, lstm in enumerate(model.lstm):
                outputs, _ = lstm(outputs)
                if i + 1 < model.hparams.lstm["num_layers"]:
                    outputs = model.dropout(outputs)
        if model.hparams.linear["num_layers"] > 0:
            for linear in model.linear:
                outputs = F.leaky_relu(linear(outputs))
        return model.activation(model.classifier(outputs))

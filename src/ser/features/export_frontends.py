"""Export-friendly twins of the spectral front-ends: the same features without complex numbers.

torch.stft returns complex tensors, which the ONNX exporters cannot handle. These modules
compute the power spectrogram as a strided convolution with a windowed DFT basis instead, and
then the same mel / log / DCT / delta steps as `ser.features.spectral`, so `LogMel` and `MFCC`
can be exported (`ser.serve.export`) with outputs equal to float32 rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ser.features.spectral import LOG_FLOOR, MFCC, LogMel


class NotExportable(Exception):
    """This front-end cannot be rewritten without complex numbers (unsupported settings)."""


class DFTPowerSpectrogram(nn.Module):
    """torchaudio's Spectrogram(power=2, center=True, reflect padding) as a strided conv1d with
    a windowed DFT basis: the ONNX exporters have no complex tensors (torch.stft returns
    complex), and a conv runs everywhere. (batch, samples) -> (batch, frames, bins)."""

    basis: torch.Tensor  # buffer

    def __init__(self, spec: torchaudio.transforms.Spectrogram) -> None:
        super().__init__()
        settings = (spec.power, spec.center, spec.pad_mode, spec.normalized, spec.pad)
        if settings != (2.0, True, "reflect", False, 0) or not spec.onesided:
            raise NotExportable(f"unsupported spectrogram settings {settings}")
        n_fft, win = int(spec.n_fft), int(spec.win_length)
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win) // 2  # torch.stft centres a shorter window in the FFT frame
        window[left : left + win] = spec.window.to(torch.float64)
        bins = n_fft // 2 + 1
        # (k * n) mod n_fft in integers keeps the angles small, so float64 cos/sin stay exact.
        phase = (torch.arange(bins)[:, None] * torch.arange(n_fft)[None, :]) % n_fft
        angle = 2 * math.pi * phase.to(torch.float64) / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
        self.register_buffer("basis", basis.to(torch.float32)[:, None, :])
        self.n_fft = n_fft
        self.hop = int(spec.hop_length)
        self.bins = bins

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        x = F.pad(wave.unsqueeze(1), (half, half), mode="reflect")
        y = F.conv1d(x, self.basis, stride=self.hop)  # (batch, 2 * bins, frames)
        real, imag = y[:, : self.bins], y[:, self.bins :]
        return (real * real + imag * imag).transpose(1, 2)


class ExportLogMel(nn.Module):
    """LogMel without complex numbers: same output to float32 rounding."""

    fb: torch.Tensor  # buffer

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        self.power = DFTPowerSpectrogram(logmel.mel.spectrogram)
        self.register_buffer("fb", logmel.mel.mel_scale.fb.clone())

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.matmul(self.power(wave), self.fb) + LOG_FLOOR)


class ExportMFCC(nn.Module):
    """MFCC (+ deltas as torchaudio.functional.compute_deltas, window 5, replicate padding)
    without complex numbers: same output to float32 rounding."""

    # Buffers.
    fb: torch.Tensor
    dct: torch.Tensor
    delta_kernel: torch.Tensor

    def __init__(self, mfcc: MFCC) -> None:
        super().__init__()
        inner = mfcc.mfcc
        if not inner.log_mels:
            raise NotExportable("MFCC with log_mels=False")
        self.power = DFTPowerSpectrogram(inner.MelSpectrogram.spectrogram)
        self.register_buffer("fb", inner.MelSpectrogram.mel_scale.fb.clone())
        self.register_buffer("dct", inner.dct_mat.clone())
        self.deltas = mfcc.deltas
        n_coeffs = self.dct.shape[1]
        kernel = torch.arange(-2, 3, dtype=torch.float32) / 10.0  # n=2: denominator 2*(1+4)
        self.register_buffer("delta_kernel", kernel.repeat(n_coeffs, 1, 1))

    def _delta(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(batch, dim, frames) -> deltas of the same shape."""
        padded = F.pad(coeffs, (2, 2), mode="replicate")
        return F.conv1d(padded, self.delta_kernel, groups=coeffs.shape[1])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.log(torch.matmul(self.power(wave), self.fb) + 1e-6)  # torchaudio's offset
        coeffs = torch.matmul(mel, self.dct).transpose(1, 2)  # (batch, n_mfcc, frames)
        if self.deltas:
            d1 = self._delta(coeffs)
            coeffs = torch.cat([coeffs, d1, self._delta(d1)], dim=1)
        return coeffs.transpose(1, 2)


def onnx_frontend(extractor: nn.Module) -> nn.Module:
    """The extractor rewritten for ONNX (log-mel, MFCC), else the extractor itself (which may
    or may not export; the export check decides)."""
    try:
        if isinstance(extractor, LogMel):
            return ExportLogMel(extractor)
        if isinstance(extractor, MFCC):
            return ExportMFCC(extractor)
    except NotExportable:
        pass
    return extractor

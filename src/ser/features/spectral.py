"""Spectral frame-level features in torch: log-mel spectra and MFCCs (+ deltas)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

# Floor inside the log: keeps digital silence finite without flattening quiet speech.
LOG_FLOOR = 1e-6


def _frame_sizes(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int, int]:
    win = round(sample_rate * win_ms / 1000)
    hop = round(sample_rate * hop_ms / 1000)
    n_fft = 1 << (win - 1).bit_length()
    return win, hop, n_fft


class LogMel(nn.Module):
    """Log mel spectrogram: (..., samples) -> (..., frames, n_mels)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        win, hop, n_fft = _frame_sizes(sample_rate, win_ms, hop_ms)
        self.sample_rate = sample_rate
        self.hop_length = hop
        self.dim = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win,
            hop_length=hop,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wave) + LOG_FLOOR).transpose(-1, -2)


class MFCC(nn.Module):
    """MFCCs, optionally with delta and delta-delta: (..., samples) -> (..., frames, dim)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 20,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        deltas: bool = True,
    ) -> None:
        super().__init__()
        win, hop, n_fft = _frame_sizes(sample_rate, win_ms, hop_ms)
        self.sample_rate = sample_rate
        self.hop_length = hop
        self.deltas = deltas
        self.dim = n_mfcc * (3 if deltas else 1)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            log_mels=True,
            melkwargs={"n_fft": n_fft, "win_length": win, "hop_length": hop, "n_mels": n_mels},
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        coeffs = self.mfcc(wave)  # (..., n_mfcc, frames)
        if self.deltas:
            d1 = torchaudio.functional.compute_deltas(coeffs)
            d2 = torchaudio.functional.compute_deltas(d1)
            coeffs = torch.cat([coeffs, d1, d2], dim=-2)
        return coeffs.transpose(-1, -2)

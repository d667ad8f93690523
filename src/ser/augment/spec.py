"""SpecAugment-style time and frequency masking on (frames, dims) feature tensors."""

from __future__ import annotations

import torch
from torch import nn


class SpecAugment(nn.Module):
    """Mask random bands of feature dimensions and runs of frames (Park et al., 2019).

    Input is (..., frames, dims); leading dims share one set of masks. With probability `p`
    it draws `freq_masks` bands of width U{0..freq_width} and `time_masks` runs of width
    U{0..min(time_width, max_time_ratio * frames)}; masks may overlap. Masked entries become
    `mask_value`: a number, or "mean" for each dimension's mean over the utterance's frames, which
    stays neutral for unnormalised features (log-mel, MFCC) where 0 would be an extreme value.

    Returns a new tensor: the input (possibly a cached feature tensor) is never modified.
    Randomness comes from `generator` if given, else torch's global generator (which
    `seed_everything` and DataLoader workers seed). In eval mode it is the identity.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 20,
        max_time_ratio: float = 1.0,
        p: float = 1.0,
        mask_value: float | str = "mean",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(freq_masks, freq_width, time_masks, time_width) < 0:
            raise ValueError("SpecAugment mask counts and widths must be >= 0")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"SpecAugment p must be in [0, 1], got {p}")
        if not 0.0 <= max_time_ratio <= 1.0:
            raise ValueError(f"SpecAugment max_time_ratio must be in [0, 1], got {max_time_ratio}")
        if isinstance(mask_value, str) and mask_value != "mean":
            raise ValueError(
                f"SpecAugment mask_value must be a number or 'mean', got {mask_value!r}"
            )
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.max_time_ratio = float(max_time_ratio)
        self.p = float(p)
        self.mask_value = mask_value
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}, "
            f"max_time_ratio={self.max_time_ratio}, p={self.p}, mask_value={self.mask_value!r}"
        )

    def _randint(self, high: int) -> int:
        """Uniform integer in [0, high] (inclusive)."""
        return int(torch.randint(0, high + 1, (1,), generator=self.generator))

    def _spans(self, count: int, width: int, size: int) -> list[tuple[int, int]]:
        spans = []
        for _ in range(count):
            w = self._randint(min(width, size))
            start = self._randint(size - w)
            spans.append((start, start + w))
        return spans

    def masks(self, frames: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw boolean masks over time (frames,) and frequency (dims,) for one application."""
        time_mask = torch.zeros(frames, dtype=torch.bool)
        freq_mask = torch.zeros(dims, dtype=torch.bool)
        for start, stop in self._spans(self.freq_masks, self.freq_width, dims):
            freq_mask[start:stop] = True
        max_time = min(self.time_width, int(self.max_time_ratio * frames))
        for start, stop in self._spans(self.time_masks, max_time, frames):
            time_mask[start:stop] = True
        return time_mask, freq_mask

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim < 2:
            raise ValueError(
                f"SpecAugment expects (..., frames, dims), got {tuple(features.shape)}"
            )
        if not self.training or self.p == 0.0:
            return features
        if self.p < 1.0 and float(torch.rand((), generator=self.generator)) >= self.p:
            return features
        frames, dims = features.shape[-2:]
        time_mask, freq_mask = self.masks(frames, dims)
        time_mask, freq_mask = time_mask.to(features.device), freq_mask.to(features.device)
        mask = time_mask[:, None] | freq_mask[None, :]  # (frames, dims)
        if self.mask_value == "mean":
            fill = features.mean(dim=-2, keepdim=True).expand_as(features)
        else:
            fill = torch.full_like(features, float(self.mask_value))
        return torch.where(mask, fill, features)

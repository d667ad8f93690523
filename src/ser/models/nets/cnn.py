"""2-D CNN over (time, feature) maps, pooled over frequency and (masked) time."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.nets.layers import ConvBlocks, classifier_head, masked_mean_std


class CNN(nn.Module):
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        channels: list[int] | tuple[int, ...] = (16, 32, 64),
        kernel_size: int = 3,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.conv = ConvBlocks(list(channels), kernel_size, input_dim)
        self.head = classifier_head(2 * self.conv.out_channels, num_classes, dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        maps, lengths = self.conv(x, lengths)  # (B, C, T', D')
        frames = maps.mean(dim=-1).transpose(1, 2)  # (B, T', C)
        return self.head(masked_mean_std(frames, lengths))

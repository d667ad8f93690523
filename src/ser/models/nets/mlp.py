"""MLP on utterance-level statistics (masked mean and std of each feature over frames)."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.nets.layers import classifier_head, masked_mean_std


class MLP(nn.Module):
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_sizes: list[int] | tuple[int, ...] = (256, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = 2 * input_dim
        for hidden in hidden_sizes:
            layers += [
                nn.Linear(size, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            size = hidden
        self.body = nn.Sequential(*layers)
        self.head = classifier_head(size, num_classes, 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(masked_mean_std(x, lengths)))

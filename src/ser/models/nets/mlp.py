"""MLP on utterance-level functionals of the frame features (mean, std, percentiles, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ser.features.functionals import Functionals
from ser.models.nets.layers import classifier_head


class MLP(nn.Module):
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_sizes: list[int] | tuple[int, ...] = (256, 128),
        dropout: float = 0.3,
        stats: Sequence[str] = ("mean", "std"),
    ) -> None:
        super().__init__()
        self.pool = Functionals(stats)
        layers: list[nn.Module] = []
        size = self.pool.output_dim(input_dim)
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
        return self.head(self.body(self.pool(x, lengths)))

"""LSTM nets over frames.

LSTM: a (bi)LSTM, masked mean and std pooling, linear head.
CausalLSTM: a forward-only LSTM with per-frame logits averaged over time, a streaming
classifier (see ser.models.nets.causal)."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.nets.causal import CausalFrameClassifier
from ser.models.nets.layers import MaskedLSTM, classifier_head, masked_mean_std


class LSTM(nn.Module):
    causal = False

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.rnn = MaskedLSTM(input_dim, hidden_size, num_layers, bidirectional, dropout)
        self.head = classifier_head(2 * self.rnn.out_size, num_classes, dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(masked_mean_std(self.rnn(x, lengths), lengths))


class CausalLSTM(CausalFrameClassifier):
    """Streaming: a forward-only LSTM over the frames as they are, a per-frame head."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self._build_head(input_dim, hidden_size, num_layers, num_classes, dropout)

"""(Bi)LSTM over frames, masked mean and std pooling, linear head.

With causal=True: a forward-only LSTM with per-frame logits averaged over time, a streaming
classifier (see ser.models.nets.causal)."""

from __future__ import annotations

import torch

from ser.models.nets.causal import CausalFrameClassifier
from ser.models.nets.layers import MaskedLSTM, classifier_head, masked_mean_std


class LSTM(CausalFrameClassifier):
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.3,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        if causal:
            self._build_head(input_dim, hidden_size, num_layers, num_classes, dropout)
            return
        self.rnn = MaskedLSTM(input_dim, hidden_size, num_layers, bidirectional, dropout)
        self.head = classifier_head(2 * self.rnn.out_size, num_classes, dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return super().forward(x, lengths)
        return self.head(masked_mean_std(self.rnn(x, lengths), lengths))

"""CNN-LSTM-FC: conv blocks extract local time-frequency patterns, an LSTM models their
sequence, fully connected layers classify the pooled LSTM states.

CausalCNNLSTM is its streaming counterpart (causal convs, unidirectional LSTM, per-frame
logits averaged over time; see ser.models.nets.causal)."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.nets.causal import CausalConvBlocks, CausalFrameClassifier
from ser.models.nets.layers import ConvBlocks, MaskedLSTM, classifier_head, masked_mean_std


class CNNLSTM(nn.Module):
    causal = False

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        channels: list[int] | tuple[int, ...] = (16, 32),
        kernel_size: int = 3,
        hidden_size: int = 96,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.conv = ConvBlocks(list(channels), kernel_size, input_dim)
        conv_size = self.conv.out_channels * self.conv.out_dim
        self.rnn = MaskedLSTM(conv_size, hidden_size, num_layers, bidirectional, dropout)
        self.fc = nn.Sequential(
            nn.Linear(2 * self.rnn.out_size, hidden_size), nn.ReLU(), nn.Dropout(dropout)
        )
        self.head = classifier_head(hidden_size, num_classes, 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        maps, lengths = self.conv(x, lengths)  # (B, C, T', D')
        frames = maps.permute(0, 2, 1, 3).flatten(2)  # (B, T', C*D')
        return self.head(self.fc(masked_mean_std(self.rnn(frames, lengths), lengths)))


class CausalCNNLSTM(CausalFrameClassifier):
    """Streaming: it cannot look ahead, so causal convs (frame rate kept) and a forward-only
    LSTM with a per-frame head."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        channels: list[int] | tuple[int, ...] = (16, 32),
        kernel_size: int = 3,
        hidden_size: int = 96,
        num_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.conv = CausalConvBlocks(list(channels), kernel_size, input_dim)
        self._build_head(self.conv.out_size, hidden_size, num_layers, num_classes, dropout)

    def encode(
        self, x: torch.Tensor, cache: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return self.conv(x, cache)

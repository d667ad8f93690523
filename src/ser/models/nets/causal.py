"""Causal building blocks for streaming: every output frame depends only on the current and
past input frames, so a model can give a posterior after each chunk of audio and carry its
state forward instead of recomputing the past.

A causal net classifies an utterance by the mean of its per-frame logits; the posterior after
any prefix is the same mean over the prefix, which is what streaming computes incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ser.features.functionals import time_mask
from ser.models.nets.layers import check_feature_depth


def running_mean(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, C) per-frame logits -> the mean over frames 0..t at every t: the posterior logits
    a causal net reports after each prefix."""
    steps = torch.arange(1, logits.shape[1] + 1, device=logits.device, dtype=logits.dtype)
    return logits.cumsum(dim=1) / steps.view(1, -1, 1)


@dataclass
class StreamState:
    """What a causal net carries between chunks."""

    conv: list[torch.Tensor] | None = None  # the last k-1 input frames of each conv layer
    rnn: tuple[torch.Tensor, torch.Tensor] | None = None  # LSTM (h, c)
    logit_sum: torch.Tensor | None = None  # sum of per-frame logits so far
    frames: int = 0


class CausalConvBlocks(nn.Module):
    """Conv2d-BatchNorm-ReLU blocks over (time, feature), causal in time (left context only),
    each followed by max-pooling of the feature axis by 2; the frame rate is kept."""

    def __init__(self, channels: list[int], kernel_size: int = 3, input_dim: int = 64) -> None:
        super().__init__()
        check_feature_depth(channels, input_dim)
        self.context = kernel_size - 1
        self.in_channels = [1, *channels[:-1]]
        self.in_dims: list[int] = []
        blocks: list[nn.Module] = []
        dim = input_dim
        for in_ch, out_ch in zip(self.in_channels, channels, strict=True):
            self.in_dims.append(dim)
            blocks.append(
                nn.Sequential(
                    # No time padding: the left context comes from the past (or zeros at start).
                    nn.Conv2d(in_ch, out_ch, kernel_size, padding=(0, kernel_size // 2)),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d((1, 2), ceil_mode=True),
                )
            )
            dim = (dim + 1) // 2
        self.blocks = nn.ModuleList(blocks)
        self.out_size = channels[-1] * dim

    def forward(
        self, x: torch.Tensor, cache: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T, D) -> (B, T, C * D') and each layer's last k-1 input frames."""
        out = x.unsqueeze(1)
        new_cache = []
        for i, block in enumerate(self.blocks):
            if cache is None:
                past = out.new_zeros(out.shape[0], out.shape[1], self.context, out.shape[3])
            else:
                past = cache[i]
            out = torch.cat([past, out], dim=2)
            new_cache.append(out[:, :, out.shape[2] - self.context :])
            out = block(out)
        return out.permute(0, 2, 1, 3).flatten(2), new_cache


class CausalFrameClassifier(nn.Module):
    """A unidirectional LSTM and a per-frame head over causal frame encodings.

    Subclasses provide `encode(x, cache) -> (frames, cache)`; forward() returns the utterance
    logits (mean of per-frame logits over real frames), stream() the running posterior.
    """

    causal = True

    def _build_head(
        self, input_size: int, hidden_size: int, num_layers: int, num_classes: int, dropout: float
    ) -> None:
        self.rnn = nn.LSTM(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))
        self.hidden_size = hidden_size

    def encode(
        self, x: torch.Tensor, cache: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        return x, None

    def frame_outputs(
        self, x: torch.Tensor, state: StreamState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, StreamState]:
        """Per-frame logits (B, T, C) and LSTM outputs (B, T, H), and the state after them."""
        state = state or StreamState()
        frames, conv = self.encode(x, state.conv)
        hidden, rnn = self.rnn(frames, state.rnn)
        logits = self.fc(hidden)
        return logits, hidden, StreamState(conv, rnn, state.logit_sum, state.frames)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self.frame_outputs(x)
        mask = time_mask(lengths, x.shape[1]).unsqueeze(-1).to(logits.dtype)
        return (logits * mask).sum(dim=1) / lengths.clamp_min(1).unsqueeze(-1).to(logits.dtype)

    def prefix_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C): after each frame t, the utterance logits of the prefix 0..t (the running
        mean that streaming reports), from one pass over the whole input."""
        return running_mean(self.frame_outputs(x)[0])

    def stream(
        self, chunk: torch.Tensor, state: StreamState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, StreamState]:
        """Feed one chunk (B, t, D) of (normalised) features: the utterance logits so far
        (B, C), the last LSTM output (B, H) and the state for the next chunk."""
        logits, hidden, state = self.frame_outputs(chunk, state)
        total = logits.sum(dim=1) + (0 if state.logit_sum is None else state.logit_sum)
        state.logit_sum, state.frames = total, state.frames + chunk.shape[1]
        return total / state.frames, hidden[:, -1], state

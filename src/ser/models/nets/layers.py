"""Building blocks shared by the nets: masks, masked pooling, conv blocks, packed LSTMs."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ser.features.functionals import time_mask


def masked_mean_std(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean and std over real frames: (B, T, D) -> (B, 2D)."""
    mask = time_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    count = mask.sum(dim=1).clamp_min(1.0)
    mean = (x * mask).sum(dim=1) / count
    var = (((x - mean.unsqueeze(1)) * mask) ** 2).sum(dim=1) / count
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


def check_feature_depth(channels: list[int], input_dim: int) -> None:
    """Each conv block halves the feature axis: refuse more blocks than it has room for."""
    if input_dim < 2 ** len(channels):
        raise ValueError(
            f"{len(channels)} conv blocks halve the feature axis {len(channels)} times, "
            f"but the features have only {input_dim} dims; use fewer channels entries"
        )


class ConvBlocks(nn.Module):
    """Conv2d-BatchNorm-ReLU-MaxPool(2) blocks over (time, feature); pools both axes by 2 each."""

    def __init__(self, channels: list[int], kernel_size: int = 3, input_dim: int = 64) -> None:
        super().__init__()
        check_feature_depth(channels, input_dim)
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                )
            )
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        # ceil_mode keeps at least one frame for utterances shorter than the pooling.
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.out_channels = channels[-1]
        self.out_dim = input_dim
        for _ in channels:
            self.out_dim = (self.out_dim + 1) // 2

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> (B, C, T', D') with the pooled lengths."""
        out = x.unsqueeze(1)
        for block in self.blocks:
            # Zero the padded frames before pooling, so that padding never reaches a real frame
            # (post-ReLU values are >= 0, so a zero never wins a max over real frames).
            out = block(out) * time_mask(lengths, out.shape[2])[:, None, :, None].to(out.dtype)
            out = self.pool(out)
            lengths = (lengths + 1) // 2
        return out, lengths


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length, leaving the padding where it is."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)
    return x.gather(1, index[:, :, None].expand_as(x))


class MaskedLSTM(nn.Module):
    """A (bi)LSTM over padded batches whose outputs on real frames ignore the padding.

    The forward direction never sees trailing padding before a real frame; the backward
    direction runs on each sequence reversed within its length. This is exact, and several
    times faster on CPU than packed sequences, which miss the fused kernels.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * directions
            self.layers.append(
                nn.ModuleList(
                    [nn.LSTM(size, hidden_size, batch_first=True) for _ in range(directions)]
                )
            )
        self.dropout = nn.Dropout(dropout)
        self.out_size = hidden_size * directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            directions = cast(nn.ModuleList, layer)  # one LSTM per direction (see __init__)
            if i > 0:
                x = self.dropout(x)
            outputs = [directions[0](x)[0]]
            if len(directions) == 2:
                backward = directions[1](reverse_padded(x, lengths))[0]
                outputs.append(reverse_padded(backward, lengths))
            x = torch.cat(outputs, dim=-1)
        return x


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout then a linear layer to class logits."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))

"""Utterance-level functionals of frame-level features, over real (non-padded) frames only:
mean, std, min, max, percentiles and the linear slope, like pyAudioAnalysis's mid-term
statistics. Used by the MLP (as its pooling layer) and by classical models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STATS = ("mean", "std", "min", "max", "p10", "p25", "p50", "p75", "p90", "slope")


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) boolean mask, True on real (non-padded) frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Functionals(nn.Module):
    """(B, T, D) features and (B,) lengths -> (B, D * len(stats)), grouped stat-major."""

    def __init__(self, stats: Sequence[str] = ("mean", "std")) -> None:
        super().__init__()
        unknown = [s for s in stats if s not in STATS]
        if unknown:
            raise ValueError(f"unknown functionals {unknown}; choose from {STATS}")
        self.stats = tuple(stats)

    def output_dim(self, input_dim: int) -> int:
        return input_dim * len(self.stats)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[1]).unsqueeze(-1)
        weight = mask.to(x.dtype)
        count = weight.sum(dim=1).clamp_min(1.0)
        mean = (x * weight).sum(dim=1) / count
        needs_sort = any(s in ("min", "max") or s.startswith("p") for s in self.stats)
        ordered = torch.where(mask, x, torch.inf).sort(dim=1).values if needs_sort else None
        last = (lengths.clamp_min(1) - 1).to(x.device)
        out = []
        for stat in self.stats:
            if stat == "mean":
                out.append(mean)
            elif stat == "std":
                var = (((x - mean.unsqueeze(1)) * weight) ** 2).sum(dim=1) / count
                out.append(torch.sqrt(var + 1e-8))
            elif stat == "slope":
                t = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)[None, :, None]
                t_centred = t - ((t * weight).sum(dim=1, keepdim=True) / count.unsqueeze(1))
                t_centred = t_centred * weight
                denom = (t_centred**2).sum(dim=1).clamp_min(1e-8)
                out.append((t_centred * (x - mean.unsqueeze(1))).sum(dim=1) / denom)
            else:
                q = (
                    {"min": 0.0, "max": 1.0}[stat]
                    if stat in ("min", "max")
                    else int(stat[1:]) / 100
                )
                # numpy's "nearest" percentile on the sorted real frames (padding sorts last).
                index = torch.round(q * last.to(x.dtype)).long()
                assert ordered is not None  # min, max and p* stats set needs_sort
                gathered = ordered.gather(1, index[:, None, None].expand(-1, 1, x.shape[2]))
                out.append(gathered.squeeze(1))
        return torch.cat(out, dim=-1)

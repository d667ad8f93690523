"""eGeMAPS (Eyben et al., 2016) through openSMILE, for comparison with the built-in features.

An optional extra: `pip install -e ".[opensmile]"`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ser.errors import SerError

# eGeMAPSv02: 25 low-level descriptors per 10 ms frame, or 88 functionals per utterance.
DIMS = {"lld": 25, "functionals": 88}


class EGeMAPS(nn.Module):
    """(samples,) or (B, samples) -> (frames, dim) or (B, frames, dim) via opensmile.

    `level="lld"` gives 25 descriptors every 10 ms; `level="functionals"` gives one frame of 88
    utterance statistics (for the MLP). Runs on the CPU in numpy, one utterance at a time.
    """

    def __init__(self, sample_rate: int = 16000, level: str = "lld") -> None:
        super().__init__()
        if level not in DIMS:
            raise SerError(f"features.extractor.level={level!r} is unknown; use lld or functionals")
        try:
            import opensmile
        except ImportError:
            raise SerError(
                'features=egemaps needs openSMILE: pip install -e ".[opensmile]"'
            ) from None
        feature_level = (
            opensmile.FeatureLevel.LowLevelDescriptors
            if level == "lld"
            else opensmile.FeatureLevel.Functionals
        )
        self.smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=feature_level
        )
        self.sample_rate = sample_rate
        self.level = level
        self.dim = DIMS[level]
        self.hop_length = sample_rate // 100 if level == "lld" else None

    def _one(self, wave: np.ndarray) -> np.ndarray:
        return self.smile.process_signal(wave, self.sample_rate).to_numpy(dtype=np.float32)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch = wave.detach().cpu().numpy().astype(np.float32, copy=False)
        if batch.ndim == 1:
            return torch.from_numpy(self._one(batch))
        return torch.from_numpy(np.stack([self._one(w) for w in batch]))

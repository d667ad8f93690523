"""openSMILE's standard feature sets (eGeMAPS, Eyben et al., 2016; ComParE-2016, Schuller et
al.), for comparison with and fusion beside the built-in features.

An optional extra: `pip install -e ".[opensmile]"`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ser.errors import SerError

# (low-level descriptors per 10 ms frame, functionals per utterance) of each feature set.
DIMS = {
    "eGeMAPSv02": {"lld": 25, "functionals": 88},
    "ComParE_2016": {"lld": 65, "functionals": 6373},
}


class OpenSMILE(nn.Module):
    """(samples,) or (B, samples) -> (frames, dim) or (B, frames, dim) via opensmile.

    `level="lld"` gives the set's descriptors every 10 ms; `level="functionals"` one frame of
    utterance statistics (for the MLP and the classical models). Runs on the CPU in numpy, one
    utterance at a time.
    """

    def __init__(
        self, sample_rate: int = 16000, feature_set: str = "eGeMAPSv02", level: str = "lld"
    ) -> None:
        super().__init__()
        if feature_set not in DIMS:
            raise SerError(
                f"features.extractor.feature_set={feature_set!r} is unknown; use one of "
                f"{sorted(DIMS)}"
            )
        if level not in DIMS[feature_set]:
            raise SerError(f"features.extractor.level={level!r} is unknown; use lld or functionals")
        try:
            import opensmile
        except ImportError:
            raise SerError(
                f"features with openSMILE's {feature_set} need openSMILE: "
                'pip install -e ".[opensmile]"'
            ) from None
        feature_level = (
            opensmile.FeatureLevel.LowLevelDescriptors
            if level == "lld"
            else opensmile.FeatureLevel.Functionals
        )
        self.smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=feature_level
        )
        self.sample_rate = sample_rate
        self.feature_set = feature_set
        self.level = level
        self.dim = DIMS[feature_set][level]
        self.hop_length = sample_rate // 100 if level == "lld" else None

    def _one(self, wave: np.ndarray) -> np.ndarray:
        return self.smile.process_signal(wave, self.sample_rate).to_numpy(
            dtype=np.float32, copy=True
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch = wave.detach().cpu().numpy().astype(np.float32, copy=False)
        if batch.ndim == 1:
            return torch.from_numpy(self._one(batch))
        return torch.from_numpy(np.stack([self._one(w) for w in batch]))

"""Functionals match numpy on the real frames and ignore padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.features.functionals import STATS, Functionals


def reference(frames: np.ndarray) -> dict[str, np.ndarray]:
    t = np.arange(len(frames))
    slope = np.polyfit(t, frames, 1)[0] if len(frames) > 1 else np.zeros(frames.shape[1])
    out = {
        "mean": frames.mean(0),
        "std": frames.std(0),
        "min": frames.min(0),
        "max": frames.max(0),
        "slope": slope,
    }
    for q in (10, 25, 50, 75, 90):
        out[f"p{q}"] = np.percentile(frames, q, axis=0, method="nearest")
    return out


def test_each_stat_matches_numpy_on_real_frames_only() -> None:
    rng = np.random.default_rng(0)
    lengths = [17, 5, 40]
    x = torch.zeros(3, 40, 4)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float32))
        x[i, n:] = 1e6  # padding must never leak into any statistic
    out = Functionals(STATS)(x, torch.tensor(lengths)).numpy().reshape(3, len(STATS), 4)
    for i, n in enumerate(lengths):
        ref = reference(x[i, :n].double().numpy())
        for j, stat in enumerate(STATS):
            np.testing.assert_allclose(out[i, j], ref[stat], atol=1e-4, err_msg=f"{stat} n={n}")


def test_slope_of_a_ramp_is_its_gradient() -> None:
    x = (0.5 * torch.arange(30.0) + 2)[None, :, None]
    (slope,) = Functionals(["slope"])(x, torch.tensor([30]))[0]
    assert slope.item() == pytest.approx(0.5, abs=1e-5)


def test_unknown_stat_is_named() -> None:
    with pytest.raises(ValueError, match="kurtosis"):
        Functionals(["mean", "kurtosis"])

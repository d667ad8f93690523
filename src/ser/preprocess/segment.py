"""Cutting long recordings into fixed-length, overlapping windows (pure functions)."""

from __future__ import annotations

import numpy as np


def segment_bounds(
    n_samples: int,
    sample_rate: float,
    window_s: float,
    hop_s: float | None = None,
    min_last_s: float | None = None,
) -> np.ndarray:
    """(start, end) sample indices of the windows `segment` cuts, as an int64 array (k, 2).

    Windows of `window_s` start every `hop_s` (default: `window_s`, no overlap). After the last
    full window, one shorter window reaching the end is added if the full windows miss the end
    and it is at least `min_last_s` long (default: half a window); shorter tails are dropped.
    A recording no longer than one window gives exactly one window, however short it is.
    Start times in seconds are `bounds[:, 0] / sample_rate`.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    hop_s = window_s if hop_s is None else hop_s
    min_last_s = window_s / 2 if min_last_s is None else min_last_s
    window = round(window_s * sample_rate)
    hop = round(hop_s * sample_rate)
    min_last = round(min_last_s * sample_rate)
    if window < 1 or hop < 1:
        raise ValueError(
            f"window_s={window_s} and hop_s={hop_s} must each be at least one sample at "
            f"{sample_rate} Hz"
        )
    if min_last < 0:
        raise ValueError(f"min_last_s must be >= 0, got {min_last_s}")
    if n_samples <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    if n_samples <= window:
        return np.array([[0, n_samples]], dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, hop, dtype=np.int64)
    bounds = np.stack([starts, starts + window], axis=1)
    last = int(starts[-1]) + hop
    # The tail window only if it reaches samples no full window covers, and is long enough.
    if bounds[-1, 1] < n_samples and last < n_samples and n_samples - last >= max(min_last, 1):
        bounds = np.vstack([bounds, [[last, n_samples]]])
    return bounds


def segment(
    wave: np.ndarray,
    sample_rate: int,
    window_s: float,
    hop_s: float | None = None,
    min_last_s: float | None = None,
) -> list[np.ndarray]:
    """Cut a mono waveform into windows (views into `wave`); rules as in `segment_bounds`."""
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"segment expects a mono (1-D) waveform, got shape {wave.shape}")
    bounds = segment_bounds(len(wave), sample_rate, window_s, hop_s, min_last_s)
    return [wave[start:end] for start, end in bounds]

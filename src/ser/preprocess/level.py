"""Level normalisation: peak, RMS, or loudness (ITU-R BS.1770 LUFS with pyloudnorm)."""

from __future__ import annotations

import numpy as np

NORMALIZE_METHODS = ("peak", "rms", "loudness", "none")
RMS_TARGET_DB = -20.0
# BS.1770 gating block: clips shorter than this are measured as one block (see loudness()).
LOUDNESS_BLOCK_S = 0.4


def peak_normalize(wave: np.ndarray) -> np.ndarray:
    """Scale so the largest absolute sample is 1.0."""
    return wave / np.max(np.abs(wave))


def rms_normalize(wave: np.ndarray, target_db: float = RMS_TARGET_DB) -> np.ndarray:
    """Scale to `target_db` dBFS RMS; clip the rare peaks this pushes past full scale."""
    gain = 10 ** (target_db / 20) / np.sqrt(np.mean(np.square(wave, dtype=np.float64)))
    return np.clip(wave * gain, -1.0, 1.0)


def describe_normalization(method: str, target_lufs: float) -> str:
    """The level step of `method` in words, for readers outside Python (model.json)."""
    descriptions = {
        "peak": "peak-normalise (largest |sample| = 1.0)",
        "rms": f"normalise RMS to {RMS_TARGET_DB:g} dBFS",
        "loudness": f"normalise loudness to {target_lufs:g} LUFS (pyloudnorm)",
        "none": "no level normalisation",
    }
    return descriptions[method]


def loudness(wave: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (BS.1770-4, K-weighted and gated).

    Clips shorter than the 400 ms gating block are measured as one block spanning the clip
    (K-weighted mean square, no gating), so short clips still get a comparable loudness.
    """
    import pyloudnorm

    # One sample less than the clip: pyloudnorm rejects a block not shorter than the data.
    block = min(LOUDNESS_BLOCK_S, (len(wave) - 1) / rate)
    meter = pyloudnorm.Meter(rate, block_size=block)
    return float(meter.integrated_loudness(np.asarray(wave, dtype=np.float64)))


def loudness_normalize(wave: np.ndarray, rate: int, target_lufs: float) -> np.ndarray:
    """Scale to `target_lufs` integrated loudness; clip peaks past full scale (rare at -23)."""
    # Peak-normalise first: the -70 LUFS absolute gate would otherwise make the result depend on
    # the recording's gain, and it keeps every non-silent clip above that gate.
    wave = peak_normalize(wave)
    measured = loudness(wave, rate)
    if not np.isfinite(measured):
        # Only reachable for (near-)digital silence, which callers reject before this.
        raise ValueError("too quiet to measure loudness (below -70 LUFS)")
    return np.clip(wave * 10 ** ((target_lufs - measured) / 20), -1.0, 1.0)

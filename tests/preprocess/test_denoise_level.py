"""Noise reduction raises SNR; loudness normalisation hits its target, also for short clips."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from ser.errors import AudioError
from ser.preprocess import Preprocessor

RATE = 16000
# The settings of conf/preprocess/clean.yaml and noisy.yaml.
PRESET = {"prop_decrease": 0.8, "freq_smooth_hz": 100.0}


def tone_bursts(seconds: float = 2.0) -> np.ndarray:
    """440 Hz bursts of 0.1 s every 0.5 s: on 20% of the time, like syllables in speech (a
    tone that never stops is stationary, and stationary gating rightly treats it as noise)."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) * ((t % 0.5) < 0.1)).astype(np.float32)


def si_sdr(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SNR in dB: the gain is normalised away later, the distortion is not."""
    target = np.dot(estimate, clean) / np.dot(clean, clean) * clean
    return float(10 * np.log10(np.sum(target**2) / np.sum((estimate - target) ** 2)))


@pytest.mark.parametrize(("method", "min_gain_db"), [("stationary", 4.0), ("nonstationary", 2.0)])
def test_noise_reduction_raises_snr(method: str, min_gain_db: float) -> None:
    clean = tone_bursts()
    noise = 0.1 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    noisy = clean + noise  # about 0 dB SNR
    denoised = Preprocessor(denoise={"method": method, **PRESET}, normalize="none").process(
        noisy, RATE
    )
    assert len(denoised) == len(noisy) and denoised.dtype == np.float32
    gain = si_sdr(clean, denoised) - si_sdr(clean, noisy)
    assert gain >= min_gain_db, f"{method}: SNR gain {gain:.1f} dB"


@pytest.mark.parametrize("method", ["stationary", "nonstationary"])
def test_noise_reduction_is_deterministic(method: str) -> None:
    noisy = tone_bursts() + 0.05 * np.random.default_rng(1).standard_normal(2 * RATE)
    pre = Preprocessor(denoise=method)
    np.testing.assert_array_equal(pre.process(noisy, RATE), pre.process(noisy, RATE))


def test_denoising_pure_noise_to_silence_is_a_reason() -> None:
    noise = 0.01 * np.random.default_rng(2).standard_normal(RATE).astype(np.float32)
    stripped = Preprocessor(denoise={"method": "stationary", "n_std_thresh": 10.0})
    with pytest.raises(AudioError, match="silent after noise reduction"):
        stripped.process(noise, RATE)


def test_bad_denoise_options_are_rejected_early() -> None:
    with pytest.raises(ValueError, match="stationary or nonstationary"):
        Preprocessor(denoise="wiener")
    with pytest.raises(ValueError, match="prop_decrease"):
        Preprocessor(denoise={"prop_decrease": 0.0})
    with pytest.raises(ValueError, match=r"freq_smooth_hz must be >= 93\.75"):
        Preprocessor(sample_rate=48000, denoise={"freq_smooth_hz": 50.0})


def voiced(seconds: float, level: float = 0.1) -> np.ndarray:
    """A harmonic, amplitude-modulated signal: loudness like speech, not a flat tone."""
    t = np.arange(int(seconds * RATE)) / RATE
    harmonics = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    return (level * harmonics * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("target", [-23.0, -16.0, -30.0])
def test_loudness_normalisation_hits_the_target(target: float) -> None:
    out = Preprocessor(normalize="loudness", target_lufs=target).process(voiced(2.0), RATE)
    measured = pyloudnorm.Meter(RATE).integrated_loudness(out.astype(np.float64))
    assert abs(measured - target) < 0.5, measured


def test_loudness_does_not_depend_on_the_input_gain() -> None:
    pre = Preprocessor(normalize="loudness")
    loud, quiet = pre.process(voiced(2.0, 0.3), RATE), pre.process(voiced(2.0, 0.0003), RATE)
    np.testing.assert_allclose(loud, quiet, atol=1e-5)


def test_clips_shorter_than_a_loudness_block_are_measured_as_one_block() -> None:
    # 250 ms < pyloudnorm's 400 ms block: measured ungated over the whole clip instead.
    short = voiced(0.25)
    out = Preprocessor(normalize="loudness", target_lufs=-23.0).process(short, RATE)
    meter = pyloudnorm.Meter(RATE, block_size=(len(out) - 1) / RATE)
    assert abs(meter.integrated_loudness(out.astype(np.float64)) + 23.0) < 0.5
    # ... and ends up as loud as a long clip of the same sound, measured the standard way.
    long = Preprocessor(normalize="loudness").process(voiced(2.0), RATE)
    assert abs(20 * np.log10(np.std(out) / np.std(long))) < 1.0

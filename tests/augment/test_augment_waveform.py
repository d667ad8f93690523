"""Each waveform transform does what its parameters say, measured on known signals."""

from __future__ import annotations

import random
from pathlib import Path

import audiomentations as am
import librosa
import numpy as np
import pytest
import soundfile as sf
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ser.augment import Compose, SpeedChange, background_noise
from ser.errors import SerError
from ser.project import CONFIG_DIR

SR = 16000
F0 = 160.0
PRESETS = Path(CONFIG_DIR) / "augmentation"


def harmonic_tone(seconds: float = 1.0, f0: float = F0) -> np.ndarray:
    """A voiced-like tone: 8 harmonics with 1/k amplitudes, peak about 0.5."""
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9))
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def f0_of(wave: np.ndarray) -> float:
    """Median YIN F0 over the signal (the tones are stationary)."""
    return float(np.median(librosa.yin(wave, fmin=60, fmax=600, sr=SR, frame_length=1024)))


def semitones(f_to: float, f_from: float) -> float:
    return float(12 * np.log2(f_to / f_from))


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2)))


def preset_transforms(name: str, **overrides: object) -> list:
    """The instantiated waveform transforms of a preset, flattening OneOf groups."""
    cfg = OmegaConf.load(PRESETS / f"{name}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    flat = []
    for t in instantiate(cfg.waveform).transforms:
        flat.extend(t.transforms if isinstance(t, am.OneOf) else [t])
    return flat


def only(transforms: list, kind: type) -> list:
    found = [t for t in transforms if type(t) is kind]
    assert found, f"no {kind.__name__} in the preset"
    return found


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(1234)
    np.random.seed(1234)


def test_pitch_shift_moves_f0_by_the_configured_semitones() -> None:
    tone = harmonic_tone()
    out = am.PitchShift(min_semitones=2.0, max_semitones=2.0, method="signalsmith_stretch", p=1.0)(
        tone, SR
    )
    assert len(out) == len(tone)
    assert semitones(f0_of(out), f0_of(tone)) == pytest.approx(2.0, abs=0.3)


def test_time_stretch_shortens_by_the_rate_and_keeps_the_pitch() -> None:
    tone = harmonic_tone()
    stretch = am.TimeStretch(
        min_rate=1.25,
        max_rate=1.25,
        leave_length_unchanged=False,
        method="signalsmith_stretch",
        p=1,
    )
    out = stretch(tone, SR)
    assert len(out) / (len(tone) / 1.25) == pytest.approx(1.0, abs=0.015)
    assert semitones(f0_of(out), f0_of(tone)) == pytest.approx(0.0, abs=0.3)


def test_speed_change_shortens_and_raises_the_pitch_together() -> None:
    tone = harmonic_tone()
    out = SpeedChange(min_rate=1.1, max_rate=1.1, p=1.0)(tone, SR)
    assert out.dtype == np.float32
    assert len(out) / (len(tone) / 1.1) == pytest.approx(1.0, abs=0.01)
    assert semitones(f0_of(out), f0_of(tone)) == pytest.approx(12 * np.log2(1.1), abs=0.3)


def test_speed_change_slower_lengthens_and_lowers() -> None:
    tone = harmonic_tone()
    out = SpeedChange(min_rate=0.9, max_rate=0.9, p=1.0)(tone, SR)
    assert len(out) / (len(tone) / 0.9) == pytest.approx(1.0, abs=0.01)
    assert semitones(f0_of(out), f0_of(tone)) == pytest.approx(12 * np.log2(0.9), abs=0.3)


def test_speed_change_draws_rates_in_range_and_respects_p() -> None:
    tone = harmonic_tone(0.25)
    speed = SpeedChange(min_rate=0.9, max_rate=1.1, p=1.0)
    for _ in range(20):
        out = speed(tone, SR)
        rate = speed.parameters["rate"]
        assert 0.9 <= rate <= 1.1
        assert abs(len(out) - len(tone) / rate) <= 2
    same = SpeedChange(min_rate=0.9, max_rate=0.9, leave_length_unchanged=True, p=1.0)(tone, SR)
    assert len(same) == len(tone)
    never = SpeedChange(min_rate=0.5, max_rate=0.5, p=0.0)
    assert np.array_equal(never(tone, SR), tone)
    with pytest.raises(ValueError):
        SpeedChange(min_rate=1.2, max_rate=1.1)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_noise_lands_inside_the_configured_snr_range(preset: str) -> None:
    tone = harmonic_tone()
    noises = [
        t for t in preset_transforms(preset) if isinstance(t, am.AddGaussianSNR | am.AddColorNoise)
    ]
    assert noises
    for noise in noises:
        noise.p = 1.0
        measured = [snr_db(tone, noise(tone, SR)) for _ in range(15)]
        assert noise.min_snr_db - 0.3 <= min(measured)
        assert max(measured) <= noise.max_snr_db + 0.3
        assert max(measured) - min(measured) > 2.0  # the SNR is drawn, not fixed


@pytest.mark.parametrize("kind", [am.AddGaussianSNR, am.AddColorNoise])
def test_fixed_snr_is_exact(kind: type) -> None:
    tone = harmonic_tone()
    out = kind(min_snr_db=10.0, max_snr_db=10.0, p=1.0)(tone, SR)
    assert snr_db(tone, out) == pytest.approx(10.0, abs=0.2)


def test_coloured_noise_follows_its_spectral_slope() -> None:
    tone = harmonic_tone()

    def band_ratio_db(f_decay: float) -> float:
        noise = am.AddColorNoise(10.0, 10.0, min_f_decay=f_decay, max_f_decay=f_decay, p=1.0)
        residual = noise(tone, SR) - tone
        power = np.abs(np.fft.rfft(residual)) ** 2
        freqs = np.fft.rfftfreq(len(residual), 1 / SR)
        low = power[(freqs > 100) & (freqs < 400)].mean()
        high = power[(freqs > 3200) & (freqs < 6400)].mean()
        return float(10 * np.log10(low / high))

    # 3 octaves apart: brown noise (-6 dB/oct) ~ +18 dB, blue (+3 dB/oct) ~ -9 dB.
    assert band_ratio_db(-6.0) > 12.0
    assert band_ratio_db(3.0) < -5.0


def test_background_noise_from_a_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hum.wav", rng.normal(0, 0.1, 2 * SR).astype(np.float32), SR)
    transforms = preset_transforms("strong", background_dir=str(tmp_path))
    (background,) = only(transforms, am.AddBackgroundNoise)
    background.p = 1.0
    tone = harmonic_tone()
    measured = [snr_db(tone, background(tone, SR)) for _ in range(10)]
    assert background.min_snr_db - 0.3 <= min(measured)
    assert max(measured) <= background.max_snr_db + 0.3


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_background_noise_is_absent_without_a_folder(preset: str) -> None:
    assert not [t for t in preset_transforms(preset) if isinstance(t, am.AddBackgroundNoise)]
    assert background_noise(None) is None


def test_background_noise_rejects_a_folder_without_audio(tmp_path: Path) -> None:
    with pytest.raises(SerError, match="no audio files"):
        background_noise(tmp_path)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_shift_moves_content_by_the_drawn_amount(preset: str) -> None:
    (shift,) = only(preset_transforms(preset), am.Shift)
    shift.p = 1.0
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    fade = int(shift.fade_duration * SR)
    amounts = []
    for _ in range(10):
        out = shift(wave, SR)
        amount = shift.parameters["shift_amount"]
        amounts.append(amount)
        assert shift.min_shift <= amount <= shift.max_shift
        k = round(amount * len(wave))
        expected = np.roll(wave, k)
        if not shift.rollover:  # the vacated part is silence
            vacated = slice(0, k) if k > 0 else slice(len(wave) + k, None)
            assert not np.any(out[vacated])
        # Away from the (faded) seams the content is the input moved by k samples.
        keep = np.ones(len(wave), dtype=bool)
        for seam in (k % len(wave), 0, len(wave)):
            keep[max(seam - fade, 0) : seam + fade] = False
        if not shift.rollover:
            keep[vacated] = False
        np.testing.assert_array_equal(out[keep], expected[keep])
    assert max(amounts) - min(amounts) > 0.02  # drawn, not fixed


def test_fixed_shift_without_and_with_rollover() -> None:
    wave = np.arange(1, 101, dtype=np.float32)
    plain = am.Shift(
        min_shift=10, max_shift=10, shift_unit="samples", rollover=False, fade_duration=0.0, p=1
    )
    np.testing.assert_array_equal(plain(wave, SR), np.r_[np.zeros(10), wave[:-10]])
    rolled = am.Shift(
        min_shift=-10, max_shift=-10, shift_unit="samples", rollover=True, fade_duration=0.0, p=1
    )
    np.testing.assert_array_equal(rolled(wave, SR), np.roll(wave, -10))


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_gain_changes_level_within_range(preset: str) -> None:
    (gain,) = only(preset_transforms(preset), am.Gain)
    gain.p = 1.0
    tone = harmonic_tone(0.25)
    measured = []
    for _ in range(20):
        out = gain(tone, SR)
        measured.append(20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(tone**2))))
    assert gain.min_gain_db - 1e-3 <= min(measured)
    assert max(measured) <= gain.max_gain_db + 1e-3
    assert max(measured) - min(measured) > 2.0
    fixed = am.Gain(min_gain_db=-6.0, max_gain_db=-6.0, p=1.0)(tone, SR)
    np.testing.assert_allclose(fixed, tone * 10 ** (-6 / 20), rtol=1e-5)


def test_compose_drops_absent_transforms_and_returns_float32() -> None:
    # A transform handing back a strided float64 view must not leak into feature extraction.
    widen = am.Lambda(transform=lambda samples, sample_rate: samples.astype(np.float64)[::2], p=1.0)
    compose = Compose([None, widen, None])
    assert len(compose.transforms) == 1
    tone = harmonic_tone(0.1)
    out = compose(samples=tone, sample_rate=SR)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, tone[::2])

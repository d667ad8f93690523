"""Waveform transforms missing from audiomentations, and a Compose that skips absent ones."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import audiomentations
import librosa
import numpy as np
from audiomentations.core.transforms_interface import BaseWaveformTransform
from audiomentations.core.utils import find_audio_files_in_paths
from numpy.typing import NDArray

from ser.errors import SerError


class Compose(audiomentations.Compose):
    """audiomentations.Compose that drops `None` entries and always returns contiguous float32.

    `None` entries come from optional transforms whose factory found nothing to do (for example
    `background_noise` with no folder), so a preset can list them unconditionally.
    """

    def __init__(self, transforms: Iterable[object], p: float = 1.0, shuffle: bool = False) -> None:
        super().__init__([t for t in transforms if t is not None], p=p, shuffle=shuffle)

    def __call__(self, samples: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
        out = super().__call__(samples=samples, sample_rate=sample_rate)
        # Feature extractors expect float32; some transforms may hand back views or float64.
        return np.ascontiguousarray(out, dtype=np.float32)


def change_speed(
    samples: NDArray[np.float32], sample_rate: int, rate: float
) -> NDArray[np.float32]:
    """The waveform played `rate` times faster: tempo and pitch both scale (Kaldi-style speed
    perturbation); the length scales by 1 / rate."""
    # Pretend the audio was recorded at sample_rate * rate and convert it to sample_rate:
    # played back at sample_rate it then runs `rate` times faster (soxr takes float rates).
    return librosa.resample(
        samples, orig_sr=sample_rate * rate, target_sr=sample_rate, res_type="soxr_hq"
    ).astype(np.float32, copy=False)


class SpeedChange(BaseWaveformTransform):
    """Speed perturbation by resampling: tempo and pitch both scale by `rate`.

    rate > 1 plays faster (shorter, higher pitch by 12*log2(rate) semitones); rate < 1 slower.
    The rate is drawn uniformly from [min_rate, max_rate] with Python's `random`, like every
    audiomentations transform. With `leave_length_unchanged` the result is cropped or
    zero-padded back to the input length.
    """

    supports_multichannel = True

    def __init__(
        self,
        min_rate: float = 0.9,
        max_rate: float = 1.1,
        leave_length_unchanged: bool = False,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        if min_rate <= 0:
            raise ValueError(f"min_rate must be > 0, got {min_rate}")
        if min_rate > max_rate:
            raise ValueError(f"min_rate ({min_rate}) must not exceed max_rate ({max_rate})")
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.leave_length_unchanged = leave_length_unchanged

    def randomize_parameters(self, samples: NDArray[np.float32], sample_rate: int) -> None:
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            self.parameters["rate"] = random.uniform(self.min_rate, self.max_rate)

    def apply(self, samples: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
        out = change_speed(samples, sample_rate, self.parameters["rate"])
        if self.leave_length_unchanged:
            out = librosa.util.fix_length(out, size=samples.shape[-1], axis=-1)
        return out


def background_noise(
    sounds_path: str | Path | None,
    min_snr_db: float = 3.0,
    max_snr_db: float = 30.0,
    p: float = 0.5,
) -> audiomentations.AddBackgroundNoise | None:
    """AddBackgroundNoise over the audio files in `sounds_path`, or None when it is null.

    Returning None lets `ser.augment.Compose` leave the transform out entirely, so a preset can
    keep `background_dir: null` by default and users switch it on with one override.
    """
    if sounds_path is None:
        return None
    if not find_audio_files_in_paths(str(sounds_path)):
        raise SerError(
            f"augmentation.background_dir={sounds_path} holds no audio files; point it at a "
            "folder of noise recordings (wav/flac/...) or set it to null"
        )
    return audiomentations.AddBackgroundNoise(
        sounds_path=str(sounds_path), min_snr_db=min_snr_db, max_snr_db=max_snr_db, p=p
    )

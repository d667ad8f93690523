"""Audio decoding (soundfile) and the preprocessing chain applied before feature extraction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from ser.errors import AudioError

# Anything quieter than this peak amplitude (about -90 dBFS) is treated as silence.
SILENCE_PEAK = 3e-5


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file with soundfile; return (float32 samples, shape (frames, channels)), rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found; check the path")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(
            path, f"cannot decode audio ({err}); re-export it as WAV or FLAC"
        ) from None
    return data, int(rate)


@dataclass(frozen=True)
class Preprocessor:
    """Decode -> mono -> resample -> validate -> optional trim -> normalise.

    Raises AudioError with the reason for files that cannot be used.
    """

    sample_rate: int = 16000
    normalize: str = "peak"
    trim_db: float | None = None

    def __post_init__(self) -> None:
        if self.normalize not in ("peak", "rms", "none"):
            raise ValueError(
                f"preprocess.normalize={self.normalize!r} is unknown; use peak, rms or none"
            )

    def config(self) -> dict:
        """The parameters that change the output (part of the feature cache key)."""
        return asdict(self)

    def load(self, path: str | Path) -> np.ndarray:
        """Read and preprocess one file into a float32 mono waveform at `sample_rate`."""
        data, rate = read_audio(path)
        return self.process(data, rate, path)

    def process(self, data: np.ndarray, rate: int, source: object = "<array>") -> np.ndarray:
        """Preprocess samples already decoded: (frames,) or (frames, channels) at `rate`."""
        wave = np.asarray(data, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        if wave.size == 0:
            raise AudioError(source, "empty audio (0 samples)")
        if not np.all(np.isfinite(wave)):
            raise AudioError(source, "audio contains NaN or Inf samples")
        if rate != self.sample_rate:
            wave = librosa.resample(wave, orig_sr=rate, target_sr=self.sample_rate)
        if np.max(np.abs(wave)) < SILENCE_PEAK:
            raise AudioError(source, "audio is silent (peak below -90 dBFS)")
        if self.trim_db is not None:
            wave, _ = librosa.effects.trim(wave, top_db=self.trim_db)
        if self.normalize == "peak":
            wave = wave / np.max(np.abs(wave))
        elif self.normalize == "rms":
            # Target -20 dBFS RMS; clip the rare peaks this pushes past full scale.
            wave = np.clip(wave * (0.1 / np.sqrt(np.mean(wave**2))), -1.0, 1.0)
        return wave.astype(np.float32, copy=False)

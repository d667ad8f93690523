"""Audio decoding (soundfile) and the preprocessing chain applied before feature extraction."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import librosa
import numpy as np
import soundfile as sf

from ser.errors import AudioError
from ser.preprocess.denoise import Denoise
from ser.preprocess.level import (
    NORMALIZE_METHODS,
    describe_normalization,
    loudness_normalize,
    peak_normalize,
    rms_normalize,
)
from ser.preprocess.trim import Trim

# Anything quieter than this peak amplitude (about -90 dBFS) is treated as silence.
SILENCE_PEAK = 3e-5
# The shortest usable audio: one 25 ms analysis frame (the features' window).
MIN_FRAME_S = 0.025
# Bump when this module's code changes its output for the same config (invalidates caches).
PREPROCESS_VERSION = 2

T = TypeVar("T", Denoise, Trim)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file with soundfile; return (float32 samples, shape (frames, channels)), rate.

    The format is detected from the file's header, not its name (AIFF named .wav works).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found; check the path")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, ValueError) as err:
        raise AudioError(
            path, f"cannot decode audio ({err}); re-export it as WAV or FLAC"
        ) from None
    return data, int(rate)


def frame_samples(rate: int) -> int:
    """Samples in one 25 ms frame at `rate`: the minimum length of usable audio."""
    return math.ceil(MIN_FRAME_S * rate)


def _coerce(value: Any, cls: type[T], name: str) -> T | None:
    """None, an instance, a method name, or a mapping of fields (plain YAML) -> instance."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(method=value)
    if isinstance(value, Mapping):
        fields = {str(k): v for k, v in value.items() if k != "_target_"}
        try:
            return cls(**fields)
        except TypeError:
            known = ", ".join(cls.__dataclass_fields__)
            raise ValueError(
                f"preprocess.{name} has unknown keys {sorted(fields)}; known: {known}"
            ) from None
    raise ValueError(f"preprocess.{name} must be null, a method name or a mapping, got {value!r}")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


@dataclass(frozen=True)
class Preprocessor:
    """Decode -> mono -> resample -> validate -> denoise -> trim -> validate -> normalise.

    normalize: peak (to 1.0), rms (to -20 dBFS), loudness (to `target_lufs`) or none.
    denoise: a Denoise, its fields as a mapping, a method name, or None (off).
    trim: a Trim, its fields as a mapping, a method name, or None (off).
    trim_db: older shorthand for `trim={method: energy, top_db: trim_db, pad_ms: 0}`.
    Raises AudioError with the reason for files that cannot be used.
    """

    sample_rate: int = 16000
    normalize: str = "peak"
    trim_db: float | None = None
    denoise: Denoise | Mapping[str, Any] | str | None = None
    trim: Trim | Mapping[str, Any] | str | None = None
    target_lufs: float = -23.0

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_METHODS:
            raise ValueError(
                f"preprocess.normalize={self.normalize!r} is unknown; "
                "use loudness, peak, rms or none"
            )
        if self.normalize == "loudness" and importlib.util.find_spec("pyloudnorm") is None:
            raise ValueError(
                "preprocess.normalize=loudness needs the pyloudnorm package: pip install pyloudnorm"
            )
        if int(self.sample_rate) != self.sample_rate or self.sample_rate < 1000:
            raise ValueError(
                f"preprocess.sample_rate must be an integer >= 1000 Hz, got {self.sample_rate}"
            )
        # Plain YAML mappings (Hydra passes DictConfig) become the frozen option objects.
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        denoise = _coerce(self.denoise, Denoise, "denoise")
        object.__setattr__(self, "denoise", denoise)
        object.__setattr__(self, "trim", _coerce(self.trim, Trim, "trim"))
        if denoise is not None:
            denoise.check_rate(self.sample_rate)
        if self.trim is not None and self.trim_db is not None:
            raise ValueError("set either preprocess.trim or the older preprocess.trim_db, not both")

    @property
    def denoiser(self) -> Denoise | None:
        """The denoising step in effect (`denoise`, a Denoise after __post_init__)."""
        return cast("Denoise | None", self.denoise)

    @property
    def trimmer(self) -> Trim | None:
        """The trimming step in effect (`trim`, or the one `trim_db` stands for)."""
        if self.trim_db is not None:
            return Trim(method="energy", top_db=self.trim_db, pad_ms=0.0)
        return self.trim  # type: ignore[return-value]  # a Trim after __post_init__

    def config(self) -> dict:
        """The parameters that change the output (part of the feature cache key; JSON-safe)."""
        cfg = asdict(self)
        cfg["version"] = PREPROCESS_VERSION
        # Library versions of the algorithms in use: an upgrade may change the output.
        libraries = ["librosa"]
        if self.denoise is not None:
            libraries.append("noisereduce")
        if self.normalize == "loudness":
            libraries.append("pyloudnorm")
        if self.trimmer is not None and self.trimmer.method == "silero":
            libraries += ["silero-vad", "torch"]
        cfg["libraries"] = {name: _version(name) for name in libraries}
        return cfg

    def describe(self) -> list[str]:
        """The steps `load` applies, in order, in words built from these settings: what a
        consumer outside Python must reproduce (model.json lists them next to exported models).
        """
        steps = [
            "decode the file (soundfile) to float32 in [-1, 1]",
            "down-mix to mono (mean of the channels)",
            f"resample to {self.sample_rate} Hz (librosa.resample, soxr_hq)",
        ]
        if self.denoiser is not None:
            steps.append(self.denoiser.describe())
        if self.trimmer is not None:
            steps.append(self.trimmer.describe())
        steps.append(describe_normalization(self.normalize, self.target_lufs))
        return steps

    def load(self, path: str | Path) -> np.ndarray:
        """Read and preprocess one file into a float32 mono waveform at `sample_rate`."""
        data, rate = read_audio(path)
        return self.process(data, rate, path)

    def process(self, data: np.ndarray, rate: int, source: object = "<array>") -> np.ndarray:
        """Preprocess samples already decoded: (frames,) or (frames, channels) at `rate`."""
        wave = self._validated_mono(data, rate, source)
        if rate != self.sample_rate:
            wave = librosa.resample(wave, orig_sr=rate, target_sr=self.sample_rate)
        if np.max(np.abs(wave)) < SILENCE_PEAK:
            raise AudioError(source, "audio is silent (peak below -90 dBFS)")
        denoiser = self.denoiser
        if denoiser is not None:
            wave = denoiser(wave, self.sample_rate)
            if np.max(np.abs(wave)) < SILENCE_PEAK:
                raise AudioError(source, "audio is silent after noise reduction (only noise)")
        trimmer = self.trimmer
        if trimmer is not None:
            wave = self._trimmed(wave, trimmer, source)
        return self._normalized(wave, source).astype(np.float32, copy=False)

    def _validated_mono(self, data: np.ndarray, rate: int, source: object) -> np.ndarray:
        data = np.asarray(data)
        if np.issubdtype(data.dtype, np.integer):
            # Integer PCM (int16 arrays, offset-binary uint8): scale to [-1, 1] like soundfile.
            info = np.iinfo(data.dtype)
            mid = (int(info.max) + 1) // 2 if info.min == 0 else 0
            data = (data.astype(np.float64) - mid) / (-int(info.min) if mid == 0 else mid)
        wave = data.astype(np.float32, copy=False)
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        if wave.ndim != 1:
            raise AudioError(source, f"expected (frames,) or (frames, channels), got {data.shape}")
        if wave.size == 0:
            raise AudioError(source, "empty audio (0 samples)")
        if not np.all(np.isfinite(wave)):
            raise AudioError(
                source, "audio contains NaN or Inf samples (a corrupt file?); re-export it"
            )
        need = frame_samples(rate)
        if wave.size < need:
            raise AudioError(
                source,
                f"too short: {wave.size} samples, need at least {need} "
                f"(one {MIN_FRAME_S * 1000:.0f} ms frame at {rate} Hz)",
            )
        return wave

    def _trimmed(self, wave: np.ndarray, trimmer: Trim, source: object) -> np.ndarray:
        bounds = trimmer.bounds(wave, self.sample_rate)
        if bounds is None:
            if trimmer.on_no_speech == "error":
                raise AudioError(
                    source,
                    "no speech found by VAD (silero-vad); if it is speech, set "
                    "preprocess.trim.on_no_speech=keep or lower preprocess.trim.threshold",
                )
            return wave
        wave = wave[bounds[0] : bounds[1]]
        need = frame_samples(self.sample_rate)
        if len(wave) < need:
            raise AudioError(
                source,
                f"too short after trimming silence: {len(wave)} samples, need at least {need} "
                f"(one {MIN_FRAME_S * 1000:.0f} ms frame at {self.sample_rate} Hz)",
            )
        return wave

    def _normalized(self, wave: np.ndarray, source: object) -> np.ndarray:
        if self.normalize == "peak":
            return peak_normalize(wave)
        if self.normalize == "rms":
            return rms_normalize(wave)
        if self.normalize == "loudness":
            try:
                return loudness_normalize(wave, self.sample_rate, self.target_lufs)
            except ValueError as err:
                raise AudioError(source, str(err)) from None
        return wave

"""Trimming leading and trailing silence: energy-based (librosa) or by silero-vad."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import torch

TRIM_METHODS = ("energy", "silero")
# silero-vad runs at these rates only; other rates are resampled to 16 kHz for detection.
_SILERO_RATES = (8000, 16000)
# The silero model is stateful (its LSTM state is reset per call): one caller at a time.
_SILERO_LOCK = threading.Lock()
# Frames per block when computing frame energies (bounds memory to ~16 MB).
_ENERGY_BLOCK = 1024


@dataclass(frozen=True)
class Trim:
    """Cut leading and trailing non-speech, keeping `pad_ms` on each side of the speech.

    method: `energy` (frames more than `top_db` below the loudest frame are silence) or
    `silero` (frames with speech probability below `threshold` are non-speech).
    on_no_speech (silero only): `error` rejects the file ("no speech found by VAD"), `keep`
    keeps it untrimmed (silero can miss non-verbal vocalisations such as laughs or sobs).
    """

    method: str = "energy"
    top_db: float = 40.0
    threshold: float = 0.5
    pad_ms: float = 50.0
    on_no_speech: str = "error"

    def __post_init__(self) -> None:
        if self.method not in TRIM_METHODS:
            raise ValueError(
                f"preprocess.trim.method={self.method!r} is unknown; use energy or silero"
            )
        if self.on_no_speech not in ("error", "keep"):
            raise ValueError(
                f"preprocess.trim.on_no_speech={self.on_no_speech!r} is unknown; use error or keep"
            )
        if not self.top_db > 0:
            raise ValueError(f"preprocess.trim.top_db must be > 0, got {self.top_db}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"preprocess.trim.threshold must be in (0, 1), got {self.threshold}")
        if not self.pad_ms >= 0:
            raise ValueError(f"preprocess.trim.pad_ms must be >= 0, got {self.pad_ms}")
        if self.method == "silero" and importlib.util.find_spec("silero_vad") is None:
            raise ValueError(
                "preprocess.trim.method=silero needs the silero-vad package: pip install silero-vad"
            )

    def describe(self) -> str:
        """This step in words with the settings its method uses, for readers outside Python."""
        if self.method == "energy":
            return (
                f"trim leading/trailing silence: frames more than {self.top_db:g} dB below the "
                f"loudest are silence, keep {self.pad_ms:g} ms on each side"
            )
        return f"trim non-speech with the Silero VAD: {asdict(self)}"

    def bounds(self, wave: np.ndarray, rate: int) -> tuple[int, int] | None:
        """[start, end) of the speech plus padding, or None if the VAD finds no speech."""
        found: tuple[int, int] | None
        if self.method == "energy":
            found = energy_bounds(wave, self.top_db)
        else:
            found = silero_bounds(wave, rate, self.threshold)
        if found is None:
            return None
        pad = round(self.pad_ms * rate / 1000)
        return max(0, found[0] - pad), min(len(wave), found[1] + pad)


def energy_bounds(
    wave: np.ndarray, top_db: float, frame_length: int = 2048, hop_length: int = 512
) -> tuple[int, int]:
    """[start, end) of the frames louder than `top_db` below the loudest frame.

    The same result as `librosa.effects.trim` (centred, zero-padded RMS frames), in numpy:
    importing librosa.effects and its first call cost several seconds per process.
    """
    half = frame_length // 2
    padded = np.pad(np.asarray(wave, dtype=np.float32), (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    # In blocks of frames: squaring all (overlapping) frames at once of an hour-long recording
    # would take gigabytes.
    power = np.concatenate(
        [
            np.mean(np.square(frames[i : i + _ENERGY_BLOCK], dtype=np.float64), axis=1)
            for i in range(0, len(frames), _ENERGY_BLOCK)
        ]
    )
    power = np.maximum(power, 1e-10)
    loud = np.flatnonzero(10 * np.log10(power / power.max()) > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * hop_length, min(len(wave), (int(loud[-1]) + 1) * hop_length)


@functools.cache
def silero_model() -> torch.jit.ScriptModule:
    """The silero-vad model shipped inside the silero-vad wheel: loaded once per process.

    Never downloads anything (load_silero_vad reads the package's data files).
    """
    threads = torch.get_num_threads()
    try:
        # Importing silero_vad calls torch.set_num_threads(1) for the whole process: undo it.
        from silero_vad import load_silero_vad

        return load_silero_vad(onnx=False)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    # The model runs on 32 ms chunks one after another: extra threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def silero_bounds(wave: np.ndarray, rate: int, threshold: float = 0.5) -> tuple[int, int] | None:
    """[start, end) from the first to the last speech chunk silero-vad finds, or None."""
    from silero_vad import get_speech_timestamps

    vad_rate = rate if rate in _SILERO_RATES else 16000
    x = wave if vad_rate == rate else librosa.resample(wave, orig_sr=rate, target_sr=vad_rate)
    # Detection on a peak-normalised copy, so quiet recordings are judged like loud ones.
    peak = float(np.max(np.abs(x)))
    x = np.ascontiguousarray(x / peak if peak > 0 else x, dtype=np.float32)
    model = silero_model()
    with _SILERO_LOCK, _one_torch_thread():
        stamps = get_speech_timestamps(
            torch.from_numpy(x), model, threshold=threshold, sampling_rate=vad_rate, speech_pad_ms=0
        )
    if not stamps:
        return None
    scale = rate / vad_rate
    start = math.floor(stamps[0]["start"] * scale)
    end = min(len(wave), math.ceil(stamps[-1]["end"] * scale))
    return start, end

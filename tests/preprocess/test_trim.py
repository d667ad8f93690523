"""Trimming leading/trailing silence: energy and silero-vad, on synthetic and real speech."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.data.voice import synthesize_utterance
from ser.errors import AudioError
from ser.preprocess import Preprocessor, Trim, silero_model
from ser.preprocess.trim import energy_bounds

RATE = 16000
PAD = RATE  # one second of silence each side, as in RAVDESS
RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ravdess"
RAVDESS_FILE = RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac"


@functools.cache
def utterance() -> np.ndarray:
    return synthesize_utterance(speaker=0, emotion="neutral", index=0)


def padded(speech: np.ndarray, noise_db: float | None = None) -> np.ndarray:
    """Speech with a second of silence (or a low noise floor) before and after."""
    silence = np.zeros(PAD, dtype=np.float32)
    wave = np.concatenate([silence, speech, silence])
    if noise_db is not None:
        rng = np.random.default_rng(0)
        wave = wave + (10 ** (noise_db / 20) * rng.standard_normal(len(wave))).astype(np.float32)
    return wave.astype(np.float32)


def speech_region(speech: np.ndarray, top_db: float = 30.0) -> tuple[int, int]:
    """[first, last) sample of the 10 ms frames within `top_db` of the loudest one (the
    synthetic utterance has ~180 ms of its own low-level noise before the speech)."""
    frames = speech[: len(speech) // 160 * 160].reshape(-1, 160).astype(np.float64)
    power = np.mean(frames**2, axis=1) + 1e-20
    loud = np.flatnonzero(10 * np.log10(power / power.max()) > -top_db)
    return int(loud[0]) * 160, (int(loud[-1]) + 1) * 160


def test_energy_bounds_match_librosa_definition() -> None:
    # Centred 2048-sample frames every 512: a burst in the middle is found to within a frame.
    wave = np.zeros(4 * RATE, dtype=np.float32)
    wave[RATE : 2 * RATE] = 0.5
    start, end = energy_bounds(wave, top_db=40)
    assert RATE - 1024 <= start <= RATE and 2 * RATE <= end <= 2 * RATE + 1024 + 512


@pytest.mark.parametrize("method", ["energy", "silero"])
def test_trim_removes_silence_and_keeps_the_speech(method: str) -> None:
    speech = utterance()
    wave = padded(speech, noise_db=-70)
    start, end = Trim(method=method, pad_ms=100).bounds(wave, RATE)
    first, last = speech_region(speech)
    assert start <= PAD + first and end >= PAD + last, (start, end)  # speech kept
    assert start >= 0.9 * PAD and end <= len(wave) - 0.9 * PAD, (start, end)  # silence gone
    out = Preprocessor(trim={"method": method, "pad_ms": 100}, normalize="none").process(wave, RATE)
    np.testing.assert_array_equal(out, wave[start:end])


def test_padding_is_kept_on_each_side() -> None:
    wave = padded(utterance())
    tight = Trim(method="silero", pad_ms=0).bounds(wave, RATE)
    loose = Trim(method="silero", pad_ms=200).bounds(wave, RATE)
    assert loose == (tight[0] - 3200, tight[1] + 3200)


def test_silero_works_at_other_rates() -> None:
    # silero runs at 8/16 kHz; 22.05 kHz audio is resampled for detection, bounds mapped back.
    import librosa

    wave = librosa.resample(padded(utterance()), orig_sr=RATE, target_sr=22050)
    start, end = Trim(method="silero", pad_ms=100).bounds(wave, 22050)
    first, last = speech_region(utterance())
    assert 0.9 * 22050 <= start <= (PAD + first) * 22050 / RATE
    assert len(wave) - 0.9 * 22050 >= end >= (PAD + last) * 22050 / RATE


@pytest.mark.ravdess
@pytest.mark.skipif(
    not RAVDESS_FILE.is_file(), reason=f"RAVDESS not found at {RAVDESS} (shared data absent)"
)
@pytest.mark.parametrize("method", ["energy", "silero"])
def test_trim_on_real_speech(method: str) -> None:
    wave, rate = sf.read(RAVDESS_FILE, dtype="float32")
    start, end = Trim(method=method, pad_ms=100).bounds(wave, rate)
    # 20 dB, not 30: this file has 20 ms clicks at -26 dB half a second before the speech.
    first, last = speech_region(wave, top_db=20)
    assert start <= first and end >= last, (start, end, first, last)  # the speech is kept
    assert start >= 0.5 * rate and end <= len(wave) - 0.5 * rate  # RAVDESS's silences go


def test_no_speech_is_an_error_or_kept_as_configured() -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    with pytest.raises(AudioError, match="no speech found by VAD"):
        Preprocessor(trim={"method": "silero", "on_no_speech": "error"}).process(noise, RATE)
    kept = Preprocessor(trim={"method": "silero", "on_no_speech": "keep"}, normalize="none")
    np.testing.assert_array_equal(kept.process(noise, RATE), noise)


def test_too_short_after_trimming_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Trim, "bounds", lambda self, wave, rate: (100, 112))
    with pytest.raises(AudioError, match=r"too short after trimming silence: 12 samples, need"):
        Preprocessor(trim="energy").process(padded(utterance()), RATE)


def test_silero_model_is_loaded_once_and_leaves_torch_threads_alone() -> None:
    threads = torch.get_num_threads()
    pre = Preprocessor(trim="silero")
    pre.process(padded(utterance()), RATE)
    pre.process(padded(utterance()), RATE)
    assert silero_model() is silero_model()
    assert silero_model.cache_info().misses <= 1
    assert torch.get_num_threads() == threads


def test_legacy_trim_db_is_energy_trim_without_padding() -> None:
    wave = padded(utterance())
    legacy = Preprocessor(trim_db=40, normalize="none").process(wave, RATE)
    start, end = Trim(method="energy", top_db=40, pad_ms=0).bounds(wave, RATE)
    np.testing.assert_array_equal(legacy, wave[start:end])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "webrtc"}, "energy or silero"),
        ({"method": "silero", "on_no_speech": "drop"}, "error or keep"),
        ({"method": "silero", "threshold": 1.5}, "threshold"),
        ({"method": "energy", "pad_ms": -1}, "pad_ms"),
        ({"method": "energy", "frames": 3}, "unknown keys"),
    ],
)
def test_bad_trim_options_name_the_choices(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Preprocessor(trim=options)

"""Decoding and preprocessing: formats, channels, rates, and one clear reason per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.errors import AudioError
from ser.preprocess import Preprocessor


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.25 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_any_rate_is_resampled_to_the_target(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(rate), rate)
    wave = Preprocessor(sample_rate=16000).load(path)
    assert abs(len(wave) - 8000) <= 2
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 5  # still a 440 Hz tone


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")]
)
def test_formats_decode(tmp_path: Path, fmt: str, subtype: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, tone(16000), 16000, format=fmt, subtype=subtype)
    wave = Preprocessor(normalize="none").load(path)
    np.testing.assert_allclose(wave, tone(16000), atol=1e-3)


def test_aiff_named_wav_is_read_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "really_aiff.wav"
    sf.write(path, tone(16000), 16000, format="AIFF", subtype="PCM_16")
    assert path.read_bytes()[:4] == b"FORM"  # an AIFF header, whatever the name says
    np.testing.assert_allclose(Preprocessor(normalize="none").load(path), tone(16000), atol=1e-3)


def test_stereo_44k_is_downmixed_and_resampled(tmp_path: Path) -> None:
    path = tmp_path / "stereo44.wav"
    left = tone(44100, 1.0)
    sf.write(path, np.stack([left, -left / 2], axis=1), 44100, subtype="PCM_24")
    wave = Preprocessor(normalize="none").load(path)
    assert wave.ndim == 1 and abs(len(wave) - 16000) <= 2
    assert np.isclose(np.max(np.abs(wave)), 0.25 / 4, rtol=0.02)  # mean of the two channels


def test_integer_arrays_are_scaled_like_soundfile() -> None:
    pcm = (tone(16000) * 32768).astype(np.int16)
    wave = Preprocessor(normalize="none").process(pcm, 16000)
    np.testing.assert_allclose(wave, tone(16000), atol=1e-4)
    offset_binary = np.round(tone(16000) * 128 + 128).astype(np.uint8)
    wave = Preprocessor(normalize="none").process(offset_binary, 16000)
    np.testing.assert_allclose(wave, tone(16000), atol=1 / 128)


def test_stereo_is_downmixed(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = tone(16000)
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000)
    wave = Preprocessor(normalize="none").load(path)
    assert wave.ndim == 1
    np.testing.assert_allclose(wave, left / 2, atol=1e-4)


@pytest.mark.parametrize(
    ("normalize", "check"),
    [
        ("peak", lambda w: np.isclose(np.max(np.abs(w)), 1.0)),
        ("rms", lambda w: np.isclose(np.sqrt(np.mean(w**2)), 0.1, rtol=1e-3)),
        ("none", lambda w: np.isclose(np.max(np.abs(w)), 0.25, rtol=1e-3)),
    ],
)
def test_normalisation(normalize: str, check) -> None:
    assert check(Preprocessor(normalize=normalize).process(tone(16000), 16000))


def test_trim_removes_leading_and_trailing_silence() -> None:
    wave = np.concatenate([np.zeros(8000), tone(16000), np.zeros(8000)]).astype(np.float32)
    out = Preprocessor(trim_db=40).process(wave, 16000)
    assert 8000 <= len(out) <= 8000 + 2 * 2048  # librosa trims at 2048-sample frames


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (np.zeros(16000, dtype=np.float32), "silent"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.1, np.nan, 0.2] * 200, dtype=np.float32), "NaN or Inf"),
        (np.array([0.1, np.inf, 0.2] * 200, dtype=np.float32), "NaN or Inf"),
        (np.full(12, 0.1, dtype=np.float32), r"too short: 12 samples, need at least 400 \(one 25"),
    ],
)
def test_bad_samples_have_a_reason(content: np.ndarray, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        Preprocessor().process(content, 16000)


def test_too_short_uses_the_input_rate() -> None:
    with pytest.raises(AudioError, match="199 samples, need at least 200"):
        Preprocessor().process(tone(8000)[:199], 8000)
    assert len(Preprocessor().process(tone(8000)[:200], 8000)) == 400


def test_zero_length_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        Preprocessor().load(path)


def test_undecodable_files_say_how_to_fix(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    header_only = tmp_path / "cut.wav"
    sf.write(header_only, tone(16000), 16000)
    header_only.write_bytes(header_only.read_bytes()[:30])  # cut inside the RIFF header
    for path in (text, header_only):
        with pytest.raises(AudioError, match=r"cannot decode .*re-export it as WAV or FLAC"):
            Preprocessor().load(path)


def test_truncated_and_missing_files_have_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, tone(16000, 2.0), 16000)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(AudioError, match="cannot decode"):
        Preprocessor().load(path)
    with pytest.raises(AudioError, match="not found"):
        Preprocessor().load(tmp_path / "nope.wav")


def test_unknown_normalisation_names_the_choices() -> None:
    with pytest.raises(ValueError, match="peak, rms or none"):
        Preprocessor(normalize="loud")


def test_trim_and_trim_db_conflict() -> None:
    with pytest.raises(ValueError, match=r"either preprocess\.trim or"):
        Preprocessor(trim="energy", trim_db=30)

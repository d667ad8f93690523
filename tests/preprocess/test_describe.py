"""Preprocessor.describe(): the steps in words follow the actual settings (model.json uses it)."""

from __future__ import annotations

from ser.preprocess import Denoise, Preprocessor, Trim


def test_the_default_chain_in_order() -> None:
    assert Preprocessor().describe() == [
        "decode the file (soundfile) to float32 in [-1, 1]",
        "down-mix to mono (mean of the channels)",
        "resample to 16000 Hz (librosa.resample, soxr_hq)",
        "peak-normalise (largest |sample| = 1.0)",
    ]


def test_each_setting_shows_up_in_the_description() -> None:
    base = " | ".join(Preprocessor().describe())
    changed = {
        "sample_rate=22050": (Preprocessor(sample_rate=22050), "resample to 22050 Hz"),
        "normalize=rms": (Preprocessor(normalize="rms"), "normalise RMS to -20 dBFS"),
        "normalize=none": (Preprocessor(normalize="none"), "no level normalisation"),
        "loudness": (
            Preprocessor(normalize="loudness", target_lufs=-18.5),
            "normalise loudness to -18.5 LUFS",
        ),
        "trim=energy": (
            Preprocessor(trim=Trim(top_db=35.0, pad_ms=20.0)),
            "more than 35 dB below the loudest are silence, keep 20 ms on each side",
        ),
        "trim_db": (Preprocessor(trim_db=30.0), "more than 30 dB below the loudest"),
        "trim=silero": (
            Preprocessor(trim={"method": "silero", "threshold": 0.3}),
            "Silero VAD: {'method': 'silero', 'top_db': 40.0, 'threshold': 0.3",
        ),
        "denoise": (
            Preprocessor(denoise=Denoise(method="nonstationary", prop_decrease=0.8)),
            "spectral gating: {'method': 'nonstationary', 'prop_decrease': 0.8",
        ),
    }
    for name, (pre, words) in changed.items():
        described = " | ".join(pre.describe())
        assert words in described, name
        assert words not in base, name
        assert described != base, name
    # Denoising comes before trimming and both before normalisation, as process() runs them.
    steps = Preprocessor(denoise="stationary", trim="energy", normalize="rms").describe()
    assert [s.split()[0] for s in steps[3:]] == ["reduce", "trim", "normalise"]

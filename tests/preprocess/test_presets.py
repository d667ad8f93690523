"""Every conf/preprocess option instantiates through Hydra and processes a synthetic utterance;
their cache-key configs differ and are JSON-serialisable."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ser.data.voice import synthesize_utterance
from ser.preprocess import Denoise, Preprocessor, Trim
from ser.project import CONFIG_DIR

ComposeFn = Callable[..., DictConfig]
OPTIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "preprocess").glob("*.yaml"))


def test_the_presets_are_there() -> None:
    assert {"default", "none", "clean", "vad", "noisy"} <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_preset_processes_a_stereo_22k_utterance(option: str, compose: ComposeFn) -> None:
    pre = instantiate(compose([f"preprocess={option}"]).preprocess)
    assert isinstance(pre, Preprocessor)
    speech = synthesize_utterance(speaker=0, emotion="neutral", index=0, sample_rate=22050)
    silence = np.zeros(22050 // 2, dtype=np.float32)
    mono = np.concatenate([silence, speech, silence])
    out = pre.process(np.stack([mono, mono], axis=1), 22050)
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    resampled = len(mono) * 16000 / 22050
    if pre.trimmer is None:
        assert abs(len(out) - resampled) <= 2
    else:  # most of the 2 x 0.5 s of silence is gone, the ~2 s of speech is not
        assert 1.5 * 16000 < len(out) < resampled - 0.6 * 16000
    if pre.normalize == "loudness":
        measured = pyloudnorm.Meter(16000).integrated_loudness(out.astype(np.float64))
        assert abs(measured - pre.target_lufs) < 0.5
    elif pre.normalize == "peak":
        assert np.isclose(np.max(np.abs(out)), 1.0)


def test_preset_configs_differ_and_serialise(compose: ComposeFn) -> None:
    configs = {
        option: instantiate(compose([f"preprocess={option}"]).preprocess).config()
        for option in OPTIONS
    }
    blobs = {option: json.dumps(cfg, sort_keys=True) for option, cfg in configs.items()}
    assert len(set(blobs.values())) == len(OPTIONS), blobs
    assert configs["clean"]["libraries"].keys() >= {"noisereduce", "pyloudnorm", "silero-vad"}


def test_nested_targets_and_plain_mappings_are_equivalent() -> None:
    nested = OmegaConf.create(
        {
            "_target_": "ser.preprocess.Preprocessor",
            "denoise": {"_target_": "ser.preprocess.Denoise", "method": "nonstationary"},
            "trim": {"_target_": "ser.preprocess.Trim", "method": "silero", "pad_ms": 80},
        }
    )
    plain = OmegaConf.create(
        {
            "_target_": "ser.preprocess.Preprocessor",
            "denoise": {"method": "nonstationary"},
            "trim": {"method": "silero", "pad_ms": 80},
        }
    )
    a, b = instantiate(nested), instantiate(plain)
    assert isinstance(a.denoise, Denoise) and isinstance(b.trim, Trim)
    assert a == b and a.config() == b.config()


def test_config_changes_with_every_option() -> None:
    base = Preprocessor().config()
    for changed in (
        Preprocessor(normalize="loudness"),
        Preprocessor(normalize="loudness", target_lufs=-20.0),
        Preprocessor(denoise="stationary"),
        Preprocessor(denoise={"prop_decrease": 0.5}),
        Preprocessor(trim="energy"),
        Preprocessor(trim={"method": "energy", "pad_ms": 10}),
        Preprocessor(trim="silero"),
        Preprocessor(trim_db=30),
    ):
        assert changed.config() != base
        json.dumps(changed.config())

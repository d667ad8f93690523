"""Every conf/augmentation preset instantiates with Hydra, runs cleanly and is reproducible."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import audiomentations as am
import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.seed import pl_worker_init_function
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import seed_everything
from torch.utils.data import DataLoader, Dataset

from ser.augment import SpecAugment, build
from ser.data.voice import synthesize_utterance
from ser.errors import SerError
from ser.features.spectral import MFCC, LogMel
from ser.project import CONFIG_DIR

SR = 16000
PRESETS = Path(CONFIG_DIR) / "augmentation"
ComposeFn = Callable[..., DictConfig]
NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load(name: str) -> DictConfig:
    return OmegaConf.load(PRESETS / f"{name}.yaml")


def always(transform: object) -> None:
    """Force every transform (and nested composition) to fire, to exercise all of them."""
    transform.p = 1.0
    for child in getattr(transform, "transforms", []):
        always(child)


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    return synthesize_utterance(0, "neutral", 0, min_duration=1.0, max_duration=1.0)


def test_presets_exist() -> None:
    assert {"none", "light", "strong"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_instantiates_and_runs_cleanly(name: str, utterance: np.ndarray) -> None:
    cfg = load(name)
    assert cfg.name == name
    assert set(cfg) >= {"name", "waveform", "spec"}
    waveform = instantiate(cfg.waveform) if cfg.waveform is not None else None
    spec = instantiate(cfg.spec) if cfg.spec is not None else None
    if name in ("none", "speed_copies"):  # no on-the-fly stage (copies: tests/test_train.py)
        assert waveform is None and spec is None
        assert all(rate > 0 and rate != 1 for rate in cfg.get("speed_copies", []))
        return
    assert isinstance(waveform, am.Compose)
    assert spec is None or isinstance(spec, SpecAugment)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    for fire_all in (False, True):
        if fire_all:
            always(waveform)
        for _ in range(3):
            out = waveform(samples=utterance, sample_rate=SR)
            assert out.dtype == np.float32 and out.ndim == 1
            assert np.all(np.isfinite(out))
            assert 0.7 * len(utterance) <= len(out) <= 1.4 * len(utterance)
            for extractor in (LogMel(), MFCC()):
                feats = extractor(torch.from_numpy(out))
                masked = spec(feats) if spec is not None else feats
                assert masked.shape == feats.shape and masked.dtype == torch.float32
                assert torch.all(torch.isfinite(masked))


@pytest.mark.parametrize("name", NAMES)
def test_build_matches_the_config(name: str) -> None:
    cfg = load(name)
    waveform, spec = build(cfg)
    assert (waveform is None) == (cfg.waveform is None)
    assert (spec is None) == (cfg.spec is None)


def test_build_of_nothing_and_of_the_old_key() -> None:
    assert build(None) == (None, None)
    with pytest.raises(SerError, match="renamed"):
        build(OmegaConf.create({"name": "old", "pipeline": None}))


def test_strong_has_every_transform_and_light_stays_mild(tmp_path: Path) -> None:
    sf.write(tmp_path / "noise.wav", np.zeros(SR, dtype=np.float32) + 0.01, SR)
    cfg = load("strong")
    cfg.background_dir = str(tmp_path)
    strong, strong_spec = build(cfg)
    kinds = {type(t) for t in strong.transforms}
    kinds |= {type(c) for t in strong.transforms if isinstance(t, am.OneOf) for c in t.transforms}
    assert {
        "SpeedChange",
        "TimeStretch",
        "PitchShift",
        "Shift",
        "AddBackgroundNoise",
        "AddGaussianSNR",
        "AddColorNoise",
        "Gain",
    } <= {k.__name__ for k in kinds}
    assert isinstance(strong_spec, SpecAugment)
    light, light_spec = build(load("light"))
    assert light_spec is None
    for t in light.transforms:
        assert 0.3 <= t.p <= 0.5
        if isinstance(t, am.AddGaussianSNR):
            assert (t.min_snr_db, t.max_snr_db) == (15.0, 40.0)


def test_background_dir_override_through_hydra_compose(compose: ComposeFn, tmp_path: Path) -> None:
    sf.write(tmp_path / "noise.wav", np.full(SR, 0.01, dtype=np.float32), SR)
    cfg = compose(["augmentation=light", f"augmentation.background_dir={tmp_path}"])
    waveform, _ = build(cfg.augmentation)
    assert any(isinstance(t, am.AddBackgroundNoise) for t in waveform.transforms)


def run_preset(name: str, seed: int, wave: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """Augment a few copies of `wave` the way a training epoch would, after seeding."""
    waveform, spec = build(load(name))
    seed_everything(seed, verbose=False)
    waves = [waveform(samples=wave, sample_rate=SR) for _ in range(4)]
    feats = [LogMel()(torch.from_numpy(w)) for w in waves]
    if spec is not None:
        feats = [spec(f) for f in feats]
    return np.concatenate(waves), torch.cat(feats)


@pytest.mark.parametrize("name", ["light", "strong"])
def test_same_seed_same_output_different_seed_different(name: str, utterance: np.ndarray) -> None:
    waves_a, feats_a = run_preset(name, 7, utterance)
    waves_b, feats_b = run_preset(name, 7, utterance)
    waves_c, feats_c = run_preset(name, 8, utterance)
    assert np.array_equal(waves_a, waves_b) and torch.equal(feats_a, feats_b)
    assert waves_a.shape != waves_c.shape or not np.array_equal(waves_a, waves_c)
    assert feats_a.shape != feats_c.shape or not torch.equal(feats_a, feats_c)


class _Augmented(Dataset):
    """A stand-in for the datamodule's training dataset: waveform -> features -> spec."""

    def __init__(self, wave: np.ndarray, n: int) -> None:
        self.wave, self.n = wave, n
        self.waveform, self.spec = build(load("strong"))
        self.extractor = LogMel()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        wave = self.waveform(samples=self.wave, sample_rate=SR)
        return self.spec(self.extractor(torch.from_numpy(wave)))


def test_dataloader_workers_are_seeded_reproducibly(utterance: np.ndarray) -> None:
    """seed_everything(workers=True) + Lightning's worker_init_fn: runs repeat, workers differ."""

    def epoch(seed: int) -> list[torch.Tensor]:
        seed_everything(seed, workers=True, verbose=False)
        loader = DataLoader(
            _Augmented(utterance, 4),
            batch_size=None,
            num_workers=2,
            worker_init_fn=pl_worker_init_function,  # what the Trainer adds when seeded
        )
        return list(loader)

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Items 0 and 1 (same input) come from different workers, so they must differ.
    assert not (first[0].shape == first[1].shape and torch.equal(first[0], first[1]))
    assert any(
        a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, other, strict=True)
    )

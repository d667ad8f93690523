"""The LightningDataModule: cached features per split, train-only statistics, the ways of
drawing training examples checked together, and its construction from conf/data."""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader

from ser.augment import change_speed, check_augmentation
from ser.data.datasets import (
    AugmentedDataset,
    FeatureDataset,
    ShardSampler,
    SpecFn,
    WindowDataset,
    pad_collate,
)
from ser.data.manifest import dataset_fingerprint, load_manifest
from ser.data.splits import SPLITS, check_speaker_independent
from ser.errors import SerError
from ser.features import FeatureCache, extract_corpus
from ser.preprocess import Preprocessor

log = logging.getLogger(__name__)


class _ExtractorSettings(Protocol):
    """Plain attributes of a feature extractor (an nn.Module, whose __getattr__ is untyped):
    `dim` always, `sample_rate` and `hop_length` on frame-level extractors."""

    dim: int
    sample_rate: int
    hop_length: int


def normalise_per_speaker(features: list[np.ndarray], speakers: list[str]) -> list[np.ndarray]:
    """Standardise each speaker's frames with the mean and std of all of that speaker's audio
    (labels unused): the usual speaker-adaptation step. Test speakers use their own audio's
    statistics, so results with it are reported apart from the train-only normalisation."""
    out = list(features)
    for speaker in set(speakers):
        rows = [i for i, s in enumerate(speakers) if s == speaker]
        frames = np.concatenate([features[i] for i in rows]).astype(np.float64)
        mean, std = frames.mean(axis=0), np.maximum(frames.std(axis=0), 1e-5)
        for i in rows:
            out[i] = ((features[i] - mean) / std).astype(np.float32)
    return out


def check_training_modes(
    *,
    on_the_fly: bool,
    frame_level: bool,
    window_s: float | None,
    random_crop_s: float | None,
    speed_copies: Sequence[float],
    speaker_norm: bool,
) -> None:
    """The ways of drawing training examples, checked together.

    Training reads cached features (whole utterances, fixed windows or random crops, plus
    speed-perturbed copies, optionally normalised per speaker), or augments each utterance's
    audio afresh every epoch (an on-the-fly waveform stage), which nothing cached can be
    combined with. Windows and random crops cut the cached frames of frame-level features, and
    exclude each other.
    """
    cached = {
        "data.window_s": window_s is not None,
        "data.random_crop_s": random_crop_s is not None,
        "augmentation.speed_copies": bool(speed_copies),
        "features.speaker_norm": speaker_norm,
    }
    if on_the_fly and any(cached.values()):
        options = " and ".join(name for name, on in cached.items() if on)
        raise SerError(
            f"{options} work on cached features, but this augmentation preset has an on-the-fly "
            "waveform stage; use augmentation=none, or set augmentation.waveform=null"
        )
    if window_s is not None and random_crop_s is not None:
        raise SerError("data.window_s and data.random_crop_s exclude each other; set one to null")
    for name, value in (("data.window_s", window_s), ("data.random_crop_s", random_crop_s)):
        if value is not None and not frame_level:
            raise SerError(f"{name} needs frame-level features (logmel, mfcc); these have no hop")
        if value is not None and value <= 0:
            raise SerError(f"{name}={value} must be > 0 seconds")
    bad = [rate for rate in speed_copies if rate <= 0 or rate == 1]
    if bad:
        raise SerError(
            f"augmentation.speed_copies={bad}: each speed factor must be > 0 and not 1 "
            "(e.g. [0.9, 1.1])"
        )


def limit_per_speaker_label(manifest: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """At most `limit` utterances per (split, speaker, label), the first ones in manifest order."""
    if not limit:
        return manifest
    groups = manifest.groupby(["split", "speaker", "label"], sort=False)
    return groups.head(limit).reset_index(drop=True)


class SERDataModule(pl.LightningDataModule):
    """Turns a manifest into DataLoaders; feature statistics come from training speakers only.

    Built from conf/data (see `build_datamodule`). `val_utterances` set (validation on held-out
    utterances of the training speakers) relaxes the speaker check for validation only.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        labels: Sequence[str],
        preprocessor: Preprocessor,
        extractor: nn.Module,
        extractor_config: dict,
        cache_dir: str | Path | None = None,
        augment: Callable[..., np.ndarray] | None = None,
        spec_augment: SpecFn | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        window_s: float | None = None,
        window_hop_s: float | None = None,
        random_crop_s: float | None = None,
        speaker_independent: bool = True,
        speaker_norm: bool = False,
        speed_copies: Sequence[float] | None = None,
        val_utterances: float | None = None,
        feature_jobs: int | None = -1,
        max_per_speaker_label: int | None = None,
    ) -> None:
        super().__init__()
        if speaker_independent:
            check_speaker_independent(manifest, val_from_train=val_utterances is not None)
        self.speed_copies = [float(rate) for rate in speed_copies or ()]
        check_training_modes(
            on_the_fly=augment is not None,
            frame_level=bool(getattr(extractor, "hop_length", None)),
            window_s=window_s,
            random_crop_s=random_crop_s,
            speed_copies=self.speed_copies,
            speaker_norm=speaker_norm,
        )
        self.manifest = limit_per_speaker_label(
            manifest.reset_index(drop=True), max_per_speaker_label
        )
        self.labels = list(labels)
        self.preprocessor = preprocessor
        self.extractor = extractor
        self.extractor_config = extractor_config
        self.cache = FeatureCache(cache_dir) if cache_dir else None
        self.augment = augment
        self.spec_augment = spec_augment
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.window_s, self.window_hop_s = window_s, window_hop_s
        self.speaker_norm = speaker_norm
        self.random_crop_s = random_crop_s
        self.feature_jobs = feature_jobs
        self.skipped: dict[str, str] = {}
        self.fingerprint = ""
        self._features: dict[str, list[np.ndarray]] = {}
        self._targets: dict[str, list[int]] = {}

    @property
    def feature_dim(self) -> int:
        return int(cast(_ExtractorSettings, self.extractor).dim)

    @property
    def frame_rate(self) -> float:
        """Feature frames per second (frame-level extractors only)."""
        extractor = cast(_ExtractorSettings, self.extractor)
        return extractor.sample_rate / extractor.hop_length

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def prepare(self) -> None:
        """Extract (or read cached) features for every utterance. Idempotent."""
        if self._features:
            return
        result = extract_corpus(
            list(self.manifest["path"]),
            self.preprocessor,
            self.extractor,
            self.extractor_config,
            self.cache,
            n_jobs=self.feature_jobs,
        )
        self.skipped = result.skipped
        self.fingerprint = dataset_fingerprint(self.manifest, result.fingerprints)
        keep = [f is not None for f in result.features]
        if not any(keep):
            raise SerError(
                f"none of the {len(keep)} audio files could be used (first: "
                f"{next(iter(self.skipped.items()))}); check the dataset root and file formats"
            )
        self.manifest = self.manifest[keep].reset_index(drop=True)
        features = [f for f in result.features if f is not None]
        if self.speaker_norm:
            features = normalise_per_speaker(features, list(self.manifest["speaker"]))
        label_index = {name: i for i, name in enumerate(self.labels)}
        for split in SPLITS:
            rows = np.flatnonzero(self.manifest["split"] == split)
            if len(rows) == 0:
                raise SerError(f"no usable utterances left in the {split} split; see skipped files")
            self._features[split] = [features[i] for i in rows]
            self._targets[split] = [label_index[x] for x in self.manifest["label"].iloc[rows]]
        for rate in self.speed_copies:
            self._add_speed_copies(rate)

    def _add_speed_copies(self, rate: float) -> None:
        """Append a copy of every training utterance played at `rate` times the speed."""
        train = self.manifest[self.manifest["split"] == "train"]
        result = extract_corpus(
            list(train["path"]),
            self.preprocessor,
            self.extractor,
            self.extractor_config,
            self.cache,
            waveform_fn=functools.partial(change_speed, rate=rate),
            waveform_config={"speed_copy": rate},
            n_jobs=self.feature_jobs,
        )
        keep = [i for i, f in enumerate(result.features) if f is not None]
        features = [f for f in result.features if f is not None]  # those of `keep`
        if self.speaker_norm:
            # A speed-shifted voice is standardised with its own statistics, like a new speaker.
            features = normalise_per_speaker(features, list(train["speaker"].iloc[keep]))
        self._features["train"] += features
        self._targets["train"] += [self._targets["train"][i] for i in keep]

    def split_size(self, split: str) -> int:
        self.prepare()
        return len(self._targets[split])

    def split_features(self, split: str) -> list[np.ndarray]:
        """The cached frame features of a split's utterances (for train, followed by the
        speed-perturbed copies, if any; never the on-the-fly augmentation)."""
        self.prepare()
        return list(self._features[split])

    def split_utterances(self, split: str) -> pd.DataFrame:
        """The manifest rows (path, speaker, label, ...) of a split's usable utterances, in the
        order of its features and targets (never the speed copies)."""
        self.prepare()
        return self.manifest[self.manifest["split"] == split].reset_index(drop=True)

    def targets(self, split: str) -> list[int]:
        self.prepare()
        return list(self._targets[split])

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std over all training frames (train speakers only)."""
        self.prepare()
        frames = np.concatenate(self._features["train"], axis=0).astype(np.float64)
        mean, std = frames.mean(axis=0), frames.std(axis=0)
        return torch.tensor(mean, dtype=torch.float32), torch.tensor(
            np.maximum(std, 1e-5), dtype=torch.float32
        )

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights from the training labels (mean weight per sample is 1)."""
        counts = np.bincount(self.targets("train"), minlength=self.num_classes).astype(np.float64)
        if np.any(counts == 0):
            missing = [self.labels[i] for i in np.flatnonzero(counts == 0)]
            raise SerError(f"the training split has no utterances of {missing}; change the split")
        return torch.tensor(counts.sum() / (self.num_classes * counts), dtype=torch.float32)

    def dataset(self, split: str) -> FeatureDataset | AugmentedDataset | WindowDataset:
        self.prepare()
        if split != "train":  # augmentation never touches val/test
            return FeatureDataset(self._features[split], self._targets[split])
        if self.augment is not None:
            paths = list(self.manifest.loc[self.manifest["split"] == "train", "path"])
            return AugmentedDataset(
                paths,
                self._targets["train"],
                self.preprocessor,
                self.augment,
                self.extractor,
                self.spec_augment,
            )
        if self.window_s is not None:
            return WindowDataset(
                self._features["train"],
                self._targets["train"],
                self.frame_rate,
                self.window_s,
                self.window_hop_s,
                self.spec_augment,
            )
        min_crop_frames = None
        if self.random_crop_s is not None:
            min_crop_frames = max(1, round(self.random_crop_s * self.frame_rate))
        return FeatureDataset(
            self._features["train"], self._targets["train"], self.spec_augment, min_crop_frames
        )

    def _loader(self, split: str) -> DataLoader:
        dataset = self.dataset(split)
        trainer = self.trainer
        processes = trainer.world_size if trainer is not None else 1
        sampler = None
        if split != "train" and trainer is not None and processes > 1:
            sampler = ShardSampler(dataset, processes, trainer.global_rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=split == "train" and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=pad_collate,
            persistent_workers=self.num_workers > 0,
            drop_last=split == "train"
            and leaves_one_behind(len(dataset), self.batch_size, processes),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def leaves_one_behind(size: int, batch_size: int, processes: int = 1) -> bool:
    """Whether each process's last training batch would hold a single utterance, which batch
    norm cannot train on ("Expected more than 1 value per channel"). That batch is dropped;
    the loader shuffles, so a different utterance sits out each epoch. Under DDP every process
    draws ceil(size / processes) utterances (PyTorch's sampler pads with repeats)."""
    per_process = -(-size // processes)
    return per_process > 1 and per_process % batch_size == 1


def build_datamodule(
    cfg: DictConfig, frontend: DictConfig | None = None, manifest: pd.DataFrame | None = None
) -> SERDataModule:
    """The datamodule of conf/data, on the config's manifest (`manifest`, one cross-validation
    fold, replaces it).

    `frontend` is the config whose preprocess and features are used instead (a checkpoint's,
    so that evaluation computes exactly the features the model was trained on).
    """
    if frontend is not None:
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.preprocess = frontend.preprocess
            cfg.features.extractor = frontend.features.extractor
    check_augmentation(cfg.get("augmentation"))
    # Partial, then called: Hydra would try to merge a DataFrame into the config.
    make = instantiate(cfg.data, _partial_=True)
    return make(
        manifest=load_manifest(cfg) if manifest is None else manifest,
        # The extractor's settings, as the feature cache's key.
        extractor_config=OmegaConf.to_container(cfg.features.extractor, resolve=True),
    )

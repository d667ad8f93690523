"""What the datamodule's loaders draw from: cached features (whole, randomly cropped or cut
into windows), audio augmented on the fly, the padding collate, and the DDP shard sampler."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ser.features.extract import features_of
from ser.preprocess import Preprocessor
from ser.preprocess.segment import segment_bounds

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pad_collate(items: Sequence[tuple[torch.Tensor, int]]) -> Batch:
    """Pad (frames, dim) sequences to the longest: returns features (B, T, D), lengths, labels."""
    feats = [f for f, _ in items]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    padded = nn.utils.rnn.pad_sequence(feats, batch_first=True)
    labels = torch.tensor([y for _, y in items], dtype=torch.long)
    return padded, lengths, labels


SpecFn = Callable[[torch.Tensor], torch.Tensor]


class ShardSampler(DistributedSampler):
    """One contiguous block of the dataset per process, without the repeats that PyTorch's
    DistributedSampler pads with: under DDP every validation and test utterance is scored
    exactly once, and the shards in rank order are the dataset in order. (A subclass of
    DistributedSampler, so that Lightning keeps it instead of replacing it.)"""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        size = len(dataset)  # type: ignore[arg-type]  # torch's Dataset declares no __len__
        start, stop = size * rank // num_replicas, size * (rank + 1) // num_replicas
        self.indices = range(start, stop)
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class FeatureDataset(Dataset):
    """Precomputed (cached) features with integer labels; optional SpecAugment on the fly.

    With `min_crop_frames`, every draw cuts a segment of random length (from that many frames
    up to the whole utterance) at a random position: the model learns to recognise from
    pieces as short as what a streaming classifier has heard at its first decisions.
    """

    def __init__(
        self,
        features: Sequence[np.ndarray],
        labels: Sequence[int],
        spec_augment: SpecFn | None = None,
        min_crop_frames: int | None = None,
    ) -> None:
        self.features = [torch.from_numpy(f) for f in features]
        self.labels = list(labels)
        self.spec_augment = spec_augment
        self.min_crop_frames = min_crop_frames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        feats = self.features[index]
        if self.min_crop_frames is not None and len(feats) > self.min_crop_frames:
            # torch's generator: seeded by seed_everything, reseeded in DataLoader workers.
            length = int(torch.randint(self.min_crop_frames, len(feats) + 1, ()).item())
            start = int(torch.randint(0, len(feats) - length + 1, ()).item())
            feats = feats[start : start + length]
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return feats, self.labels[index]


class WindowDataset(Dataset):
    """Fixed-length, overlapping windows of training utterances, each with its utterance's
    label: long recordings become several utterance-level examples (val/test stay whole)."""

    def __init__(
        self,
        features: Sequence[np.ndarray],
        labels: Sequence[int],
        frame_rate: float,
        window_s: float,
        hop_s: float | None = None,
        spec_augment: SpecFn | None = None,
    ) -> None:
        self.features = [torch.from_numpy(f) for f in features]
        self.labels = list(labels)
        self.spec_augment = spec_augment
        self.windows = [
            (i, int(start), int(end))
            for i, f in enumerate(features)
            for start, end in segment_bounds(len(f), frame_rate, window_s, hop_s)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        utterance, start, end = self.windows[index]
        feats = self.features[utterance][start:end]
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return feats, self.labels[utterance]


class AugmentedDataset(Dataset):
    """Training audio augmented on the fly, so every epoch sees new variants (never cached)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        preprocessor: Preprocessor,
        augment: Callable[..., np.ndarray],
        extractor: nn.Module,
        spec_augment: SpecFn | None = None,
    ) -> None:
        self.paths, self.labels = list(paths), list(labels)
        self.preprocessor, self.augment, self.extractor = preprocessor, augment, extractor
        self.spec_augment = spec_augment
        self.waves: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # Preprocess once (VAD and denoising are slow), augment afresh every epoch.
        wave = self.waves.get(index)
        if wave is None:
            wave = self.waves[index] = self.preprocessor.load(self.paths[index])
        wave = self.augment(samples=wave, sample_rate=self.preprocessor.sample_rate)
        feats = torch.from_numpy(features_of(wave, self.extractor))
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return feats, self.labels[index]

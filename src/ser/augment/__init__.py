"""Training-time augmentation, built by Hydra from conf/augmentation/<preset>.yaml.

A preset has up to two stages, both for the training split only and never cached:

* ``waveform``: an audiomentations pipeline (``ser.augment.Compose``) called as
  ``waveform(samples=wave, sample_rate=sr)`` on the preprocessed float32 mono waveform, before
  feature extraction. Output is float32 but its length may differ (speed change, time stretch).
* ``spec``: ``ser.augment.SpecAugment`` called as ``spec(features)`` on a (frames, dims) tensor
  after extraction, so it also applies to features served from the feature cache. It returns a
  new tensor and never modifies its input.

A preset may also list ``speed_copies``: fixed speed factors (e.g. ``[0.9, 1.1]``). Each adds
one copy of every training utterance played at that speed. Unlike the two stages above, the
copies are deterministic, so their features are computed once and cached like the originals',
and every model (the classical ones too) trains on originals plus copies.

Presets may also set ``background_dir``: a folder of noise recordings for
``background_noise``; when it is null that transform is left out of the pipeline.

Seeding contract (reproducible runs):

* audiomentations transforms, including ``SpeedChange``, draw from Python's ``random`` and
  ``numpy.random`` global state; ``SpecAugment`` draws from torch's global generator unless
  given an explicit ``generator``.
* ``pytorch_lightning.seed_everything(seed, workers=True)`` seeds all three in the main process
  (``num_workers=0``) and makes the Trainer install ``pl_worker_init_function``, which reseeds
  all three in every DataLoader worker from the run seed, the worker id and the rank. Without
  Lightning, PyTorch's own worker start-up reseeds them from the loader's base seed.
* So the same seed, worker count and batch order give identical augmented batches. Any other
  consumer of those global generators in the same process shifts the stream (still
  deterministic). Do not pass an explicit ``generator`` to a SpecAugment used inside
  DataLoader workers: every worker would receive a copy of the same generator state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from ser.augment.spec import SpecAugment
from ser.augment.waveform import Compose, SpeedChange, background_noise, change_speed
from ser.errors import SerError

WaveformFn = Callable[..., np.ndarray]
SpecFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "Compose",
    "SpecAugment",
    "SpeedChange",
    "background_noise",
    "build",
    "change_speed",
    "check_augmentation",
]


def check_augmentation(cfg: Mapping[str, Any] | None) -> None:
    """A preset in today's form (its stages are instantiated by Hydra with the datamodule)."""
    if cfg is not None and "pipeline" in cfg:
        raise SerError(
            "augmentation.pipeline was renamed to augmentation.waveform; update the config"
        )


def build(cfg: Mapping[str, Any] | None) -> tuple[WaveformFn | None, SpecFn | None]:
    """Instantiate an augmentation config node: (waveform_fn, spec_fn), None for absent stages."""
    check_augmentation(cfg)
    if cfg is None:
        return None, None
    waveform = cfg.get("waveform")
    spec = cfg.get("spec")
    return (
        instantiate(waveform) if waveform is not None else None,
        instantiate(spec) if spec is not None else None,
    )

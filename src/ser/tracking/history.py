"""Per-epoch metric history, kept in memory for the learning-curve plot (any logger)."""

from __future__ import annotations

from collections import defaultdict

import pytorch_lightning as pl

TRACKED = ("train/loss", "train/uar", "val/loss", "val/uar")


class EpochHistory(pl.Callback):
    """Records train and val loss/UAR at the end of each training epoch."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = defaultdict(list)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key in TRACKED:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.history[key].append(float(value))

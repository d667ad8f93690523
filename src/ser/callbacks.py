"""What Lightning shows: the callbacks of the `callbacks` config group that Lightning does not
ship as wanted, and the messages a user cannot act on, silenced."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import (
    ProcessingSpeedColumn,
    RichProgressBarTheme,
)
from rich.progress import BarColumn


class CompactProgressBar(RichProgressBar):
    """Lightning's rich progress bar that stays readable in an 80-column terminal: one metric a
    line, so that Rich never folds a name mid-word, and without `v_num` (the MLflow run id's
    tail, which says nothing at a glance)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("theme", RichProgressBarTheme(metrics_text_delimiter="\n"))
        super().__init__(**kwargs)

    def configure_columns(self, trainer: pl.Trainer) -> list:
        # Without the batches-per-second column and with a bar of 20 (of 40) cells, the
        # metrics column has room for "val/uar_best: 0.625" in 80 columns.
        columns = [
            c
            for c in super().configure_columns(trainer)
            if not isinstance(c, ProcessingSpeedColumn)
        ]
        for column in columns:
            if isinstance(column, BarColumn):
                column.bar_width = 20
        return columns

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class _NoTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... try installing litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NO_TIPS = _NoTips()


def quiet_lightning() -> None:
    """Silence what a user cannot act on: Lightning's tips, and the FutureWarning that
    Lightning's own pytree helper raises against this torch (`isinstance(treespec, LeafSpec)`).
    Lightning's model summary is off in conf/trainer (its FLOPs column reads 0 without an
    example input); train() prints the parameter count instead."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NO_TIPS)  # once
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

"""Stable-Baselines3 metrics into an MLflow run: an SB3 logger output format."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger


class MLflowOutputFormat(KVWriter):
    """Writes SB3's scalar key-values (rollout/ep_rew_mean, train/loss, ...) as MLflow metrics
    at SB3's step (timesteps); strings, videos and the like are skipped."""

    def __init__(
        self, client: MlflowClient, run_id: str, prefix: str = "", flush_every: int = 20
    ) -> None:
        self.client, self.run_id, self.prefix = client, run_id, prefix
        # One database write per dump would dominate a fast RL loop: buffer them.
        self.flush_every = flush_every
        self.pending: list[Metric] = []
        self.dumps = 0

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{self.prefix}{key}", float(value), now, int(step))
            for key, value in key_values.items()
            if isinstance(value, int | float | np.number)
            and not isinstance(value, bool)
            and "mlflow" not in (key_excluded.get(key) or ())
        ]
        self.pending += metrics
        self.dumps += 1
        if self.dumps % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + 1000])
        self.pending = []

    def close(self) -> None:
        self.flush()


def sb3_logger(client: MlflowClient, run_id: str, prefix: str = "", verbose: bool = True) -> Logger:
    """An SB3 Logger writing to MLflow (and to stdout when `verbose`)."""
    formats: list[KVWriter] = [MLflowOutputFormat(client, run_id, prefix)]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(folder=None, output_formats=formats)

"""Run tracking: MLflow store location, run tags, artifacts, final run status."""

from ser.tracking.history import EpochHistory
from ser.tracking.mlflow import (
    finish_run,
    git_commit,
    mlflow_logger,
    tracking_uri,
    ui_command,
)

__all__ = [
    "EpochHistory",
    "finish_run",
    "git_commit",
    "mlflow_logger",
    "tracking_uri",
    "ui_command",
]

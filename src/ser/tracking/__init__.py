"""Run tracking: MLflow store location, run tags, artifacts, final run status."""

from ser.tracking.mlflow import (
    finish_run,
    git_commit,
    mlflow_logger,
    run_summary,
    tracking_uri,
)

__all__ = [
    "EpochHistory",
    "finish_run",
    "git_commit",
    "mlflow_logger",
    "run_summary",
    "tracking_uri",
]

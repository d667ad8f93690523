"""Run tracking: the MLflow store, run tags and status, and the model registry."""

from ser.tracking.mlflow import (
    finish_run,
    git_commit,
    logger_tracking_uri,
    mlflow_logger,
    run_status,
    run_summary,
    tracking_uri,
)

__all__ = [
    "finish_run",
    "git_commit",
    "logger_tracking_uri",
    "mlflow_logger",
    "run_status",
    "run_summary",
    "tracking_uri",
]

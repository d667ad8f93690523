"""MLflow helpers: the default sqlite store under mlruns/, run tags, and the final run status."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger


def tracking_uri(configured: str | None, mlruns_dir: str | Path) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db.

    MLflow 3 refuses a plain ./mlruns file store by default, hence sqlite.
    """
    if configured:
        return str(configured)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    path = Path(mlruns_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def artifact_location(uri: str, configured: str | None, mlruns_dir: str | Path) -> str | None:
    """Artifacts go under mlruns/artifacts for the local store; a remote server picks its own."""
    if configured:
        return str(configured)
    if uri.startswith("sqlite:") or uri.startswith("file:"):
        return (Path(mlruns_dir).resolve() / "artifacts").as_uri()
    return None


def create_sqlite_store(uri: str) -> None:
    """Create (or migrate) a local sqlite store's schema under a file lock.

    Two runs that start at once on a fresh mlruns/ (a joblib sweep, two terminals) otherwise
    race in MLflow's schema migration and one dies with "table ... already exists". MLflow
    caches the store per URI, so the logger's client reuses the one opened here.
    """
    if not uri.startswith("sqlite:///"):
        return
    # Imported here, as in Lightning's logger: mlflow is slow to import.
    from mlflow.tracking import MlflowClient

    with FileLock(f"{uri.removeprefix('sqlite:///')}.lock"):
        MlflowClient(uri).search_experiments(max_results=1)


def mlflow_logger(
    settings: dict[str, Any], mlruns_dir: str | Path, tags: dict[str, str]
) -> MLFlowLogger:
    """Build Lightning's MLFlowLogger from the `logger.mlflow` config and start its run."""
    settings = dict(settings)
    settings.pop("_target_", None)
    uri = tracking_uri(settings.pop("tracking_uri", None), mlruns_dir)
    location = artifact_location(uri, settings.pop("artifact_location", None), mlruns_dir)
    create_sqlite_store(uri)
    logger = MLFlowLogger(
        tracking_uri=uri,
        artifact_location=location,
        tags={**(settings.pop("tags", None) or {}), **tags},
        **settings,
    )
    # MLflow's set_tracking_uri (called by Lightning here) also exports MLFLOW_TRACKING_URI,
    # which would send every later run in this process to this store: put it back as it was.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        _ = logger.run_id  # creates the experiment and the run now, so a crash can mark it FAILED
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    return logger


def finish_run(logger: MLFlowLogger, error: BaseException | None) -> str:
    """Mark the run FINISHED, FAILED (exception) or KILLED (Ctrl-C, SIGTERM); return the status."""
    if error is None:
        status = "FINISHED"
    elif isinstance(error, KeyboardInterrupt | SystemExit):
        status = "KILLED"
    else:
        status = "FAILED"
    logger.experiment.set_terminated(logger.run_id, status)
    return status


def git_commit(root: str | Path = ".") -> str:
    """HEAD's commit (suffixed -dirty when the tree has changes), or 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def run_summary(logger: MLFlowLogger) -> str:
    """Where the run went, and the command that opens the MLflow UI on that store."""
    client = logger.experiment
    experiment = client.get_experiment(logger.experiment_id).name
    status = client.get_run(logger.run_id).info.status
    uri = logger._tracking_uri  # Lightning keeps the URI it was given only here
    return (
        f"MLflow run {logger.run_id} (experiment {experiment!r}) {status}.\n"
        f"Compare runs: mlflow ui --backend-store-uri {uri}"
    )

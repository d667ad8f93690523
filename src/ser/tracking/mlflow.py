"""MLflow helpers: the default sqlite store under mlruns/, run tags, and the final run status."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger

from ser.project import default_mlruns_dir

log = logging.getLogger(__name__)


def tracking_uri(
    configured: str | None, mlruns_dir: str | Path | None = None, create: bool = True
) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else sqlite:///<mlruns_dir>/mlflow.db
    (`mlruns_dir` defaults to `default_mlruns_dir()`; `create=False` for tools that only read,
    so that looking does not make an empty store).

    MLflow 3 refuses a plain ./mlruns file store by default, hence sqlite.
    """
    if configured:
        return str(configured)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    path = Path(mlruns_dir if mlruns_dir is not None else default_mlruns_dir()).resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def artifact_location(uri: str, configured: str | None, mlruns_dir: str | Path) -> str | None:
    """Artifacts go under mlruns/artifacts for the local store; a remote server picks its own."""
    if configured:
        return str(configured)
    if uri.startswith("sqlite:") or uri.startswith("file:"):
        return (Path(mlruns_dir).resolve() / "artifacts").as_uri()
    return None


def create_sqlite_store(uri: str, artifacts_uri: str | None = None) -> None:
    """Create (or migrate) a local sqlite store's schema under a file lock, and make its
    artifact locations its own (`rehome_artifacts`) when `artifacts_uri` is given.

    Two runs that start at once on a fresh mlruns/ (a joblib sweep, two terminals) otherwise
    race in MLflow's schema migration and one dies with "table ... already exists". MLflow
    caches the store per URI, so the logger's client reuses the one opened here.
    """
    if not uri.startswith("sqlite:///"):
        return
    # Imported here, as in Lightning's logger: mlflow is slow to import.
    from mlflow.tracking import MlflowClient

    db = uri.removeprefix("sqlite:///")
    with FileLock(f"{db}.lock"):
        MlflowClient(uri).search_experiments(max_results=1)
        if artifacts_uri is not None and artifacts_uri.startswith("file:"):
            changed = rehome_artifacts(Path(db), artifacts_uri)
            if changed:
                log.warning(
                    "this MLflow store was copied from another project: %d artifact locations "
                    "now point to its own %s",
                    changed,
                    artifacts_uri,
                )


# The columns of MLflow's sqlite schema that hold artifact URIs.
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def rehome_artifacts(db: Path, artifacts_uri: str) -> int:
    """Point artifact URIs under another project's `.../mlruns/artifacts` at `artifacts_uri`.

    MLflow records absolute artifact locations. A project copied with `cp -r` (its mlruns/
    included) would otherwise read and write the original's artifacts, and new runs of the copy
    would land in the original. The copy holds the same files under its own mlruns/artifacts,
    so its URIs are rewritten to them. MLflow has no API for this; the local sqlite file is
    updated directly. Returns the number of values changed.
    """
    import sqlite3

    own = artifacts_uri.rstrip("/")
    with sqlite3.connect(db) as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        locations = connection.execute("SELECT DISTINCT artifact_location FROM experiments")
        roots = {str(r[0]).rstrip("/") for r in locations if r[0]}
        foreign = [
            r
            for r in roots
            if r.startswith("file:") and r.endswith("/mlruns/artifacts") and r != own
        ]
        changed = 0
        for old in foreign:
            n = len(old)
            for table, column in ARTIFACT_COLUMNS:
                if table not in tables:
                    continue
                # `old` itself, or a path below it (not a sibling that merely starts alike)
                changed += connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE substr({column}, 1, ?) = ? "
                    f"AND (length({column}) = ? OR substr({column}, ?, 1) = '/')",
                    (own, n + 1, n, old, n, n + 1),
                ).rowcount
    return changed


def mlflow_logger(
    settings: dict[str, Any], mlruns_dir: str | Path, tags: dict[str, str]
) -> MLFlowLogger:
    """Build Lightning's MLFlowLogger from the `logger.mlflow` config and start its run."""
    settings = dict(settings)
    settings.pop("_target_", None)
    uri = tracking_uri(settings.pop("tracking_uri", None), mlruns_dir)
    configured = settings.pop("artifact_location", None)
    location = artifact_location(uri, configured, mlruns_dir)
    # The default location follows the store (a copied project); a configured one is kept.
    create_sqlite_store(uri, None if configured else location)
    logger = MLFlowLogger(
        tracking_uri=uri,
        artifact_location=location,
        tags={**(settings.pop("tags", None) or {}), **tags},
        **settings,
    )
    # Lightning calls MLflow's set_tracking_uri here, which sets MLflow's global URI and exports
    # MLFLOW_TRACKING_URI: every later run in this process (a test, a notebook) would go to this
    # store. Both are put back as they were (in MLflow 3 the variable mirrors the global).
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        _ = logger.run_id  # creates the experiment and the run now, so a crash can mark it FAILED
    finally:
        import mlflow

        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None unsets both
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


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    # While a Trainer runs, its own SIGTERM handler (which calls this one after it) has noted the
    # signal, and its loops stop at the next batch with SIGTERMException, a SystemExit. Raising
    # here as well would interrupt at any line, even inside an MLflow write, and lose the status.
    if signal.getsignal(signal.SIGTERM) is not _raise_keyboard_interrupt:
        return
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def run_status(logger: MLFlowLogger | None, owner: bool = True) -> Iterator[None]:
    """End the logger's run FINISHED when the block completes, FAILED when it raises, KILLED on
    Ctrl-C or SIGTERM (a cluster scheduler's stop), instead of leaving it RUNNING forever.

    `owner=False` (a DDP process other than rank 0, or no run to mark) only handles SIGTERM.
    A Lightning SIGTERMException carries no exit code: it leaves as the exit status of a process
    killed by SIGTERM (143).
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    except BaseException as error:
        if logger is not None and owner:
            status = finish_run(logger, error)
            log.error("MLflow run %s marked %s", logger.run_id, status)
        if isinstance(error, SIGTERMException):
            raise SystemExit(128 + signal.SIGTERM) from error
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if logger is not None and owner:
        finish_run(logger, None)


def logger_tracking_uri(logger: MLFlowLogger) -> str:
    """The store a logger writes to (its client's URI; Lightning keeps its own copy private)."""
    return str(logger.experiment.tracking_uri)


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
    uri = logger_tracking_uri(logger)
    return (
        f"MLflow run {logger.run_id} (experiment {experiment!r}) {status}.\n"
        f"Compare runs: mlflow ui --backend-store-uri {uri}"
    )

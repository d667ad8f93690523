"""MLflow helpers: the default sqlite store under mlruns/, run tags, and the final run status."""

from __future__ import annotations

import csv
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from ser.atomic import atomic_write
from ser.errors import SerError
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


# MLflow's HTTP client retries a failed call 7 times with back-off up to 120 s and waits up to
# 120 s for an answer: a tracking server that goes away stalls training for minutes per call.
# Bounded here (about 10 s per call) unless the user set MLflow's own variables.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def is_remote(uri: str) -> bool:
    """A tracking server reached over HTTP (not a local sqlite or file store)."""
    return uri.startswith(("http://", "https://"))


def unreachable(error: BaseException) -> bool:
    """True for an MLflow call that got no answer from its server (refused, timed out, retries
    used up); False for an answer that was an error (a RestException), which is a real bug."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if not isinstance(error, MlflowException) or isinstance(error, RestException):
        return False
    # MLflow raises its own exception inside the `except` for the requests error.
    return isinstance(error.__context__, requests.exceptions.RequestException)


class GuardedClient:
    """An MlflowClient whose calls give up on a server that has gone away: the first call that
    gets no answer reports it (`on_lost`) and every later call returns None without trying, so
    training goes on. A call the server answers with an error still raises."""

    def __init__(self, client: Any, on_lost: Callable[[BaseException], None]) -> None:
        self._client = client
        self._on_lost = on_lost
        self.lost: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.lost is not None:
                return None
            try:
                return attribute(*args, **kwargs)
            except Exception as error:
                if not unreachable(error):
                    raise
                self.lost = error
                self._on_lost(error)
                return None

        return guarded


class TrackingLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, for a tracking server that may go away during a run.

    Its client is a `GuardedClient`: when the server stops answering, one error line says so
    and where the run's outputs are (`local_dir`), the metrics logged so far (and every later
    one) are written to `local_dir/metrics.csv`, and training goes on without the server."""

    def __init__(self, *args: Any, local_dir: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.metric_history: list[dict[str, Any]] = []
        self._guarded: GuardedClient | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        client = MLFlowLogger.experiment.fget(self)  # type: ignore[attr-defined]
        if self._guarded is None:
            self._guarded = GuardedClient(client, self._server_lost)
        return self._guarded

    @property
    def server_lost(self) -> BaseException | None:
        """The error that lost the server, or None while it answers."""
        return self._guarded.lost if self._guarded is not None else None

    @property
    def local_metrics(self) -> Path | None:
        return self.local_dir / "metrics.csv" if self.local_dir is not None else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metric_history += [
            {"step": step, "metric": k, "value": float(v)} for k, v in metrics.items()
        ]
        lost_before = self.server_lost is not None
        super().log_metrics(metrics, step)
        if lost_before:  # a loss during this call wrote them already
            self.write_local_metrics()

    def write_local_metrics(self) -> None:
        """Every metric logged in this run (step, name, value), atomically."""
        if self.local_metrics is None:
            return
        with atomic_write(self.local_metrics) as tmp, tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, ["step", "metric", "value"])
            writer.writeheader()
            writer.writerows(self.metric_history)

    def lost_line(self, ended: bool = False) -> str:
        """What a lost server means for this run: said once when it happens, and at the end."""
        where = f"; its outputs are in {self.local_dir}" if self.local_dir else ""
        metrics = f" (metrics in {self.local_metrics})" if self.local_metrics else ""
        lost = "was lost during this run:" if ended else "lost:"
        going = "" if ended else " and this run goes on without it"
        return (
            f"MLflow server {self._tracking_uri} {lost} run {self._run_id} stays RUNNING "
            f"there{going}{where}{metrics}"
        )

    def _server_lost(self, error: BaseException) -> None:
        self.write_local_metrics()
        reason = str(error).split(" (Caused by")[0].split(" failed with exception ")[-1]
        log.error("%s. (%s)", self.lost_line(), reason[:200])


def create_experiment(logger: MLFlowLogger) -> None:
    """Create the logger's experiment unless it exists, for runs that start at once on a new
    store or server (a sweep's jobs): Lightning looks the name up and then creates it, and
    every run but the first to create it would die with RESOURCE_ALREADY_EXISTS."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # A client of its own: the logger's `experiment` would look the name up and create the run.
    client = MlflowClient(logger._tracking_uri)
    name = logger._experiment_name
    if client.get_experiment_by_name(name) is not None:
        return  # Lightning finds it (or, deleted, reports it)
    try:
        client.create_experiment(name, artifact_location=logger._artifact_location)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def mlflow_logger(
    settings: dict[str, Any],
    mlruns_dir: str | Path,
    tags: dict[str, str],
    local_dir: str | Path | None = None,
) -> TrackingLogger:
    """Build the run's MLflow logger from the `logger.mlflow` config and start its run;
    `local_dir` is where the run's outputs stay if a tracking server goes away."""
    settings = dict(settings)
    settings.pop("_target_", None)
    uri = tracking_uri(settings.pop("tracking_uri", None), mlruns_dir)
    configured = settings.pop("artifact_location", None)
    location = artifact_location(uri, configured, mlruns_dir)
    # The default location follows the store (a copied project); a configured one is kept.
    create_sqlite_store(uri, None if configured else location)
    if is_remote(uri):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        # Its retry warnings would repeat what the one line on a lost server says.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logger = TrackingLogger(
        tracking_uri=uri,
        artifact_location=location,
        tags={**(settings.pop("tags", None) or {}), **tags},
        local_dir=local_dir,
        **settings,
    )
    # Lightning calls MLflow's set_tracking_uri here, which sets MLflow's global URI and exports
    # MLFLOW_TRACKING_URI: every later run in this process (a test, a notebook) would go to this
    # store. Both are put back as they were (in MLflow 3 the variable mirrors the global).
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        create_experiment(logger)
        _ = logger.run_id  # creates the run now, so that a crash can mark it FAILED
    except Exception as error:
        if unreachable(error):
            raise SerError(
                f"the MLflow tracking server {uri} does not answer: start it, or unset "
                "MLFLOW_TRACKING_URI (or logger.mlflow.tracking_uri) to log to ./mlruns"
            ) from error
        raise
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
    """Where the run went, and the command that opens the MLflow UI on that store (or, for a
    server that went away during the run, where the run's outputs are)."""
    if isinstance(logger, TrackingLogger) and logger.server_lost is not None:
        return f"{logger.lost_line(ended=True)}."
    client = logger.experiment
    experiment = client.get_experiment(logger.experiment_id).name
    status = client.get_run(logger.run_id).info.status
    uri = logger_tracking_uri(logger)
    compare = f"open {uri}" if is_remote(uri) else f"mlflow ui --backend-store-uri {uri}"
    return (
        f"MLflow run {logger.run_id} (experiment {experiment!r}) {status}.\nCompare runs: {compare}"
    )

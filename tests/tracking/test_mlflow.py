"""MLflow helpers: runs land in the store they were given, and SB3's metrics reach MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from stable_baselines3.common.logger import Logger

from ser.errors import SerError
from ser.tracking import mlflow_logger
from ser.tracking.mlflow import GuardedClient, unreachable
from ser.tracking.sb3 import MLflowOutputFormat


def test_each_logger_uses_its_own_store_and_leaves_the_environment(tmp_path: Path) -> None:
    # MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI; a second run must not follow it.
    first = mlflow_logger({"experiment_name": "a"}, tmp_path / "one", {})
    second = mlflow_logger({"experiment_name": "b"}, tmp_path / "two", {})
    assert "MLFLOW_TRACKING_URI" not in os.environ
    for store, logger in (("one", first), ("two", second)):
        client = MlflowClient(f"sqlite:///{tmp_path / store / 'mlflow.db'}")
        assert client.get_run(logger.run_id).info.run_id == logger.run_id
    # Nor MLflow's global URI, which code that sets and restores it would export again.
    assert str(tmp_path) not in mlflow.get_tracking_uri()


def test_runs_starting_at_once_on_a_fresh_store_all_succeed(tmp_path: Path) -> None:
    # Unserialised, MLflow's schema migration races: "table ... already exists".
    code = (
        "import sys; from ser.tracking import mlflow_logger; "
        "mlflow_logger({'experiment_name': 'race'}, sys.argv[1], {})"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [run.communicate()[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("race")
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_sb3_metrics_are_written_to_the_run(tmp_path: Path) -> None:
    run = mlflow_logger({"experiment_name": "rl"}, tmp_path, {})
    client = run.experiment
    writer = MLflowOutputFormat(client, run.run_id, prefix="p/", flush_every=2)
    logger = Logger(folder=None, output_formats=[writer])
    for step in range(3):
        logger.record("rollout/ep_rew_mean", 0.5 * step)
        logger.record("time/fps", 100 + step)
        logger.record("note", "text is skipped")
        logger.dump(step=step * 10)
    assert len(client.get_metric_history(run.run_id, "p/rollout/ep_rew_mean")) == 2  # buffered
    logger.close()
    history = client.get_metric_history(run.run_id, "p/rollout/ep_rew_mean")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (10, 0.5), (20, 1.0)]
    assert "p/note" not in client.get_run(run.run_id).data.metrics


def test_a_copied_project_writes_artifacts_into_its_own_store(tmp_path: Path) -> None:
    import shutil

    original, copy = tmp_path / "original", tmp_path / "copy"
    settings = {"experiment_name": "e", "run_name": "r"}
    first = mlflow_logger(settings, original / "mlruns", {})
    first.experiment.log_text(first.run_id, "hello", "note.txt")
    first.experiment.set_terminated(first.run_id)
    shutil.copytree(original, copy)  # `cp -r`: the store and its artifacts

    second = mlflow_logger(settings, copy / "mlruns", {})
    second.experiment.log_text(second.run_id, "new", "note.txt")
    client = MlflowClient(f"sqlite:///{copy / 'mlruns' / 'mlflow.db'}")
    own = (copy / "mlruns" / "artifacts").as_uri()
    for run_id in (first.run_id, second.run_id):
        assert client.get_run(run_id).info.artifact_uri.startswith(own + "/")
    assert client.get_experiment_by_name("e").artifact_location == own
    # nothing of the copy's new run went into the original, and the old run reads its copy
    assert not list((original / "mlruns" / "artifacts").rglob(f"*{second.run_id}*"))
    assert list((copy / "mlruns" / "artifacts").rglob(f"*{second.run_id}*"))
    shutil.rmtree(original)  # the copy stands on its own
    note = client.download_artifacts(first.run_id, "note.txt", str(tmp_path / "dl"))
    assert Path(note).read_text() == "hello"
    note = client.download_artifacts(second.run_id, "note.txt", str(tmp_path / "dl2"))
    assert Path(note).read_text() == "new"


def test_a_server_that_does_not_answer_is_lost_once_and_then_left_alone(
    tmp_path: Path, monkeypatch
) -> None:
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    lost: list[BaseException] = []
    calls: list[str] = []
    remote = MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    original = remote.log_metric
    monkeypatch.setattr(remote, "log_metric", lambda *a: calls.append("call") or original(*a))
    client = GuardedClient(remote, lost.append)
    assert client.log_metric("run", "val/uar", 0.5) is None
    assert client.log_metric("run", "val/uar", 0.6) is None
    assert len(lost) == 1 and unreachable(lost[0])
    assert calls == ["call"]  # the second call did not try the server again


def test_an_error_from_the_store_is_not_a_lost_server(tmp_path: Path) -> None:
    lost: list[BaseException] = []
    client = GuardedClient(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), lost.append)
    with pytest.raises(MlflowException, match="not found"):
        client.get_run("0123456789abcdef0123456789abcdef")
    assert not lost and client.lost is None
    assert client.tracking_uri.startswith("sqlite:")  # attributes pass through


def test_no_answer_when_a_run_starts_is_one_error_naming_the_fix(monkeypatch) -> None:
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = {"experiment_name": "a", "tracking_uri": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(SerError, match="does not answer: start it, or unset MLFLOW_TRACKING_URI"):
        mlflow_logger(settings, "unused", {})

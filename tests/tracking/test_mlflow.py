"""MLflow helpers: runs land in the store they were given, and SB3's metrics reach MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient
from stable_baselines3.common.logger import Logger

from ser.tracking import mlflow_logger
from ser.tracking.sb3 import MLflowOutputFormat


def test_each_logger_uses_its_own_store_and_leaves_the_environment(tmp_path: Path) -> None:
    # MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI; a second run must not follow it.
    first = mlflow_logger({"experiment_name": "a"}, tmp_path / "one", {})
    second = mlflow_logger({"experiment_name": "b"}, tmp_path / "two", {})
    assert "MLFLOW_TRACKING_URI" not in os.environ
    for store, logger in (("one", first), ("two", second)):
        client = MlflowClient(f"sqlite:///{tmp_path / store / 'mlflow.db'}")
        assert client.get_run(logger.run_id).info.run_id == logger.run_id


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

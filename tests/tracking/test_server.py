"""A shared MLflow tracking server for real: `mlflow server` started on 127.0.0.1, training
logging through it, the registered model loaded over HTTP by ser-predict and ser-serve, and
the server stopped in the middle of training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import mlflow_server, ser_server, stop_process_group
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
# The start of the line a run prints when its server goes away.
LOST = " lost: run "


def popen_train(args: list[str], uri: str, cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """`python train.py` logging to the server at `uri`; its output lines, collected as they
    come (so a test can wait for one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": uri}
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, output: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s:\n{output()}"
        time.sleep(0.5)


def test_training_logs_through_the_server_and_its_model_is_served_from_it(
    tmp_path: Path, train_args, cli, data_dir: Path
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    with mlflow_server(tmp_path / "server") as (uri, _):
        args = train_args("debug=fast", "register_model=shared")
        result = cli(args, cwd=work, env={"MLFLOW_TRACKING_URI": uri}, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"Compare runs: open {uri}" in result.stdout
        # Nothing went to a local store: not where train.py ran, not under paths.root_dir.
        assert not list(tmp_path.rglob("mlruns"))

        client = MlflowClient(uri)
        (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params["model/net/_target_"] == "ser.models.nets.cnn_lstm_net"
        assert 0.0 <= run.data.metrics["test/uar"] <= 1.0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"predictions.csv", "confusion_matrix.png", "config.yaml"} <= artifacts
        assert len(client.list_artifacts(run.info.run_id, "checkpoints")) == 1
        # The artifacts went through the server into its own folder.
        assert list((tmp_path / "server" / "artifacts").rglob("predictions.csv"))
        version = client.get_model_version_by_alias("shared", "champion")
        assert version.run_id == run.info.run_id

        wav = sorted((data_dir / "synthetic").rglob("spk01_angry_000.wav"))[0]
        predicted = cli(
            [sys.executable, "-m", "ser.serve.predict", "--model", "models:/shared@champion",
             "--format", "csv", str(wav)],
            cwd=elsewhere, env={"MLFLOW_TRACKING_URI": uri}, timeout=180,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        label = pd.read_csv(pd.io.common.StringIO(predicted.stdout))["label"].iloc[0]

        with ser_server("models:/shared@champion", elsewhere, tracking_uri=uri) as base:
            answer = httpx.post(
                f"{base}/predict", files={"file": ("a.wav", wav.read_bytes(), "audio/wav")}
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] == label
        assert not list(elsewhere.rglob("mlruns"))


def test_training_goes_on_when_the_server_goes_away_and_sigterm_still_ends_it(
    tmp_path: Path, train_args
) -> None:
    """Two runs on one server, which is stopped once both have logged an epoch: the shorter
    run finishes with its checkpoint and metrics on disk, the endless one ends on SIGTERM."""
    work = tmp_path / "work"
    work.mkdir()
    common = ["trainer.max_epochs={}", "callbacks.early_stopping=null", "register_model=unreached"]
    runs = {"short": 6, "endless": 10_000}
    with mlflow_server(tmp_path / "server") as (uri, server):
        processes = {}
        for name, epochs in runs.items():
            args = train_args(
                *(o.format(epochs) for o in common),
                f"logger.mlflow.run_name={name}",
                f"hydra.run.dir={work / name}",
            )
            processes[name] = popen_train(args, uri, work)
        try:
            client = MlflowClient(uri)

            def both_logged_an_epoch() -> bool:
                experiments = [e for e in client.search_experiments() if e.name != "Default"]
                if not experiments:
                    return False
                found = client.search_runs([experiments[0].experiment_id])
                return sum("val/uar" in r.data.metrics for r in found) == 2

            def outputs() -> str:
                return "\n".join("".join(lines)[-2000:] for _, lines in processes.values())

            wait_for(both_logged_an_epoch, 240, "epoch logged by both runs", outputs)
            stop_process_group(server)
            assert server.returncode is not None

            short, short_lines = processes["short"]
            assert short.wait(timeout=300) == 0, "".join(short_lines)[-3000:]
            output = "".join(short_lines)
            lost = [line for line in short_lines if LOST in line]
            # One line when it happens; the run's summary at the end says it again.
            assert len(lost) == 1, output[-3000:]
            assert str(work / "short") in lost[0]
            assert any("was lost during this run: run" in line for line in short_lines)
            assert "Traceback" not in output
            assert "Not registered as unreached: the MLflow server was lost" in output
            checkpoints = list((work / "short" / "checkpoints").glob("*.ckpt"))
            assert len(checkpoints) == 1
            metrics = pd.read_csv(work / "short" / "metrics.csv")
            assert "test/uar" in set(metrics.metric)
            assert (metrics.metric == "val/uar").sum() == 6  # every epoch, before and after

            endless, endless_lines = processes["endless"]
            lost_said = lambda: any(LOST in line for line in endless_lines)  # noqa: E731
            wait_for(lost_said, 120, "lost line", outputs)
            stopped = time.monotonic()
            endless.send_signal(signal.SIGTERM)
            code = endless.wait(timeout=60)
            assert time.monotonic() - stopped < 30
            assert code == 128 + signal.SIGTERM, "".join(endless_lines)[-3000:]
        finally:
            for process, _ in processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)

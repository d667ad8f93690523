"""Time `python train.py` with the defaults on a fresh root (corpus generated, empty feature
cache, new MLflow store), then again with everything cached, against the 3-minute budget.

    python scripts/bench_train.py [--runs 1] [extra Hydra overrides...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 180.0


def run_once(root: Path, overrides: list[str]) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "SER_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(experiments, order_by=["start_time DESC"])[0]
    return seconds, run.data.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="warm runs after the cold one")
    args, overrides = parser.parse_known_args()
    print(f"cpu cores: {os.cpu_count()}  overrides: {overrides or '(defaults)'}")
    print(
        f"{'run':<6} {'wall s':>7} {'budget s':>8} {'ratio':>6} {'epochs':>6} "
        f"{'val UAR':>8} {'test UAR':>8} {'test WA':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(1 + args.runs):
            seconds, m = run_once(root, overrides)
            label = "cold" if i == 0 else f"warm{i}"
            print(
                f"{label:<6} {seconds:7.1f} {BUDGET_S:8.0f} {seconds / BUDGET_S:6.2f} "
                f"{int(m.get('epoch', -1)) + 1:6d} {m.get('val/uar_best', float('nan')):8.3f} "
                f"{m.get('test/uar', float('nan')):8.3f} {m.get('test/wa', float('nan')):8.3f}"
            )


if __name__ == "__main__":
    main()

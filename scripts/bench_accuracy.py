"""Speaker-independent accuracy on RAVDESS (8 classes, 6 folds of 4 actors), written into the
README as a markdown table.

Each row is one `python train.py dataset=ravdess protocol=kfold_speaker model=... features=...`
run (an MLflow parent with 6 fold runs). Columns: UAR mean and std with normalisation fitted on
the training speakers only, and, separately, with per-speaker normalisation
(`features.speaker_norm=true`, which uses each test speaker's own unlabelled audio).

    python scripts/bench_accuracy.py [--root ../shared/data/ravdess] [--models svm:pyaa mlp:logmel]
        [--no-speaker-norm] [--readme README.md] [-- extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ["svm:pyaa", "mlp:logmel", "cnn:logmel", "lstm:logmel", "cnn_lstm:logmel"]
BEGIN, END = "<!-- bench_accuracy:begin -->", "<!-- bench_accuracy:end -->"


def run(root: Path, ravdess: Path, model: str, features: str, extra: list[str]) -> dict:
    """One cross-validated run; returns the parent run's metrics and the wall time."""
    env = {**os.environ, "SER_ROOT": str(root), "RAVDESS_ROOT": str(ravdess)}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [
        sys.executable,
        str(REPO / "train.py"),
        "dataset=ravdess",
        "protocol=kfold_speaker",
        f"model={model}",
        f"features={features}",
        "callbacks.progress_bar=null",
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(args, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("ser-ravdess")
    parents = [
        r
        for r in client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    return {**parents[0].data.metrics, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model:features")
    parser.add_argument("--no-speaker-norm", action="store_true")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if not args.root.is_dir():
        sys.exit(f"error: RAVDESS not found at {args.root}; pass --root")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            model, features = spec.split(":")
            train_only = run(Path(tmp), args.root, model, features, extra)
            norm = (
                None
                if args.no_speaker_norm
                else run(
                    Path(tmp), args.root, model, features, [*extra, "features.speaker_norm=true"]
                )
            )
            rows.append((model, features, train_only, norm))
            print(
                f"{model:9s} {features:7s} UAR {train_only['test/uar_mean']:.3f} "
                f"+- {train_only['test/uar_std']:.3f} ({train_only['seconds']:.0f} s)"
                + (
                    f"  speaker_norm {norm['test/uar_mean']:.3f} +- {norm['test/uar_std']:.3f}"
                    if norm
                    else ""
                ),
                flush=True,
            )
    minutes = (time.perf_counter() - started) / 60
    table = [
        "| model | features | UAR, train-only normalisation | WA | macro-F1 | "
        "UAR, per-speaker normalisation | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, features, m, norm in rows:
        speaker = f"{norm['test/uar_mean']:.3f} ± {norm['test/uar_std']:.3f}" if norm else "-"
        spent = (m["seconds"] + (norm["seconds"] if norm else 0)) / 60
        table.append(
            f"| {model} | {features} | **{m['test/uar_mean']:.3f} ± "
            f"{m['test/uar_std']:.3f}** | {m['test/wa_mean']:.3f} | "
            f"{m['test/f1_mean']:.3f} | {speaker} | {spent:.1f} |"
        )
    overrides = " ".join(extra) or "none"
    block = "\n".join(
        [
            BEGIN,
            *table,
            "",
            f"`python scripts/bench_accuracy.py --models {' '.join(args.models)}`"
            f" (extra overrides: {overrides}); {minutes:.0f} minutes on "
            f"{os.cpu_count()} CPU cores.",
            END,
        ]
    )
    print(block)
    text = args.readme.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        args.readme.write_text(text)
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()

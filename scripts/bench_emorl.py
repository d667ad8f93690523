"""Emo-RL benchmark: accuracy against audio consumed on held-out speakers, written into the
README as a markdown table, with the trade-off plot copied to docs/img/.

One `python -m ser.rl.train` run (a causal CNN-LSTM trained first, then one DQN agent per
lambda) on RAVDESS (8 classes, speaker-independent hold-out) where ../shared/data/ravdess
exists, else on the synthetic corpus. Prints the goal checks side by side:
agent UAR within 2 points of the full utterance at <= 60 % of the speech heard, and the agent
above the confidence-threshold baseline at the same amount of audio.

    python scripts/bench_emorl.py [--root ../shared/data/ravdess] [--wait-costs 0.02 0.05 0.1 0.2]
        [-- extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench_emorl:begin -->", "<!-- bench_emorl:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--wait-costs", nargs="+", default=["0.02", "0.05", "0.1", "0.2"])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--image", type=Path, default=REPO / "docs/img/emorl_tradeoff.png")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    ravdess = args.root.is_dir()
    dataset = ["dataset=ravdess"] if ravdess else []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAVDESS_ROOT": str(args.root)}
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [
            sys.executable,
            "-m",
            "ser.rl.train",
            *dataset,
            f"paths.root_dir={tmp}",
            "callbacks.progress_bar=null",
            f"rl.wait_costs=[{','.join(args.wait_costs)}]",
            *extra,
        ]
        subprocess.run(command, cwd=tmp, env=env, check=True)
        client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        name = f"ser-{'ravdess' if ravdess else 'synthetic'}-rl"
        (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        local = Path(client.download_artifacts(run.info.run_id, "", f"{tmp}/dl"))
        table = pd.read_csv(local / "decisions.csv")
        args.image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local / "accuracy_vs_audio.png", args.image)
        metrics = run.data.metrics
    minutes = (time.perf_counter() - started) / 60

    full = table[table.strategy == "full"].iloc[0]
    lines = [
        "| strategy | setting | UAR | WA | mean fraction of speech heard | mean seconds heard |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        setting = f"λ = {row.setting:g}" if row.strategy == "agent" else f"{row.setting:g}"
        lines.append(
            f"| {row.strategy} | {setting} | {row.uar:.3f} | {row.wa:.3f} | "
            f"{row.fraction_mean:.2f} | {row.seconds_mean:.2f} |"
        )
    checks = []
    for _, row in table[table.strategy == "agent"].iterrows():
        tag = f"lambda{row.setting:g}"
        margin = metrics[f"test/agent_vs_confidence_uar_{tag}"]
        within = full.uar - row.uar <= 0.02 and row.fraction_mean <= 0.60
        checks.append(
            f"λ = {row.setting:g}: UAR {row.uar:.3f} vs full {full.uar:.3f} "
            f"({100 * (row.uar - full.uar):+.1f} points) at {100 * row.fraction_mean:.0f} % heard "
            f"-> goal {'met' if within else 'NOT met'}; vs the confidence baseline at the same "
            f"audio: {100 * margin:+.1f} points"
        )
    corpus = "RAVDESS (8 classes, speaker-independent hold-out)" if ravdess else "synthetic corpus"
    block = "\n".join(
        [
            BEGIN,
            f"Test speakers of {corpus}; {minutes:.0f} minutes on {os.cpu_count()} CPU cores "
            f"(`python scripts/bench_emorl.py {' '.join(extra)}`).",
            "",
            *lines,
            "",
            *[f"- {c}" for c in checks],
            "",
        ]
    )
    print(block)
    text = args.readme.read_text()
    if BEGIN in text:
        start, end = text.index(BEGIN), text.index(END)
        args.readme.write_text(text[:start] + block + text[end:])
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()

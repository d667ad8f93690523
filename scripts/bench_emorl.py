"""Emo-RL benchmark: accuracy against audio consumed on held-out speakers, written into the
README as a markdown table, with the trade-off plot copied to docs/img/.

One `python -m ser.rl.train` run (a causal CNN-LSTM trained first, then one DQN agent per
lambda) on RAVDESS (8 classes, speaker-independent hold-out) where ../shared/data/ravdess
exists, else on the synthetic corpus. Prints the goal checks side by side:
agent UAR within 2 points of the full utterance at <= 60 % of the speech heard, and the agent
above the confidence-threshold baseline at the same amount of audio.

With `--seeds A B C` the agents are trained once per seed on the same classifier (trained in
the first run, reused by the others) and the same split (`protocol.seed=A`), and the checks use
each lambda's mean over seeds: with a few hundred episodes one DQN run is not a measurement.

    python scripts/bench_emorl.py [--root ../shared/data/ravdess] [--wait-costs 0.02 0.05 0.1 0.2]
        [--seeds 42 1 2] [-- extra Hydra overrides]
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
WAIT_COSTS = ["0.02", "0.05", "0.1", "0.2"]


def run_agents(
    tmp: str, base: list[str], env: dict, experiment: str, seed: str | None, overrides: list[str]
) -> tuple[pd.DataFrame, dict, Path]:
    """One `ser.rl.train` run in the shared root `tmp` (with `seed=`, unless None); its
    decisions table, metrics and the directory its artifacts were downloaded to."""
    out = Path(tmp) / f"seed{seed or 'default'}"
    seeded = [f"seed={seed}"] if seed else []
    command = [*base, *seeded, f"hydra.run.dir={out}", *overrides]
    subprocess.run(command, cwd=tmp, env=env, check=True)
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    ids = [client.get_experiment_by_name(experiment).experiment_id]
    (run,) = client.search_runs(ids, order_by=["start_time DESC"], max_results=1)
    local = Path(client.download_artifacts(run.info.run_id, "", f"{out}/dl"))
    return pd.read_csv(local / "decisions.csv"), run.data.metrics, local


def table_lines(table: pd.DataFrame) -> list[str]:
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
    return lines


def goal_check(lam: float, uar: float, fraction: float, full: float, margin: str) -> str:
    within = full - uar <= 0.02 and fraction <= 0.60
    return (
        f"λ = {lam:g}: UAR {uar:.3f} vs full {full:.3f} ({100 * (uar - full):+.1f} points) at "
        f"{100 * fraction:.0f} % heard -> goal {'met' if within else 'NOT met'}; vs the "
        f"confidence baseline at the same audio: {margin}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--wait-costs", nargs="+", default=WAIT_COSTS)
    parser.add_argument("--seeds", nargs="+", default=None, help="agent seeds (default: one run)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--image", type=Path, default=REPO / "docs/img/emorl_tradeoff.png")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    ravdess = args.root.is_dir()
    dataset = ["dataset=ravdess"] if ravdess else []
    experiment = f"ser-{'ravdess' if ravdess else 'synthetic'}-rl"
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAVDESS_ROOT": str(args.root)}
        env.pop("MLFLOW_TRACKING_URI", None)
        base = [
            sys.executable,
            "-m",
            "ser.rl.train",
            *dataset,
            f"paths.root_dir={tmp}",
            "callbacks.progress_bar=null",
            f"rl.wait_costs=[{','.join(args.wait_costs)}]",
            *extra,
        ]
        if args.seeds is None:
            runs.append(run_agents(tmp, base, env, experiment, None, []))
        else:
            first, *others = args.seeds
            split = [f"protocol.seed={first}"]
            runs.append(run_agents(tmp, base, env, experiment, first, split))
            reuse = [*split, f"rl.classifier={Path(tmp) / f'seed{first}' / 'classifier.ckpt'}"]
            runs += [run_agents(tmp, base, env, experiment, s, reuse) for s in others]
        args.image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runs[0][2] / "accuracy_vs_audio.png", args.image)
    minutes = (time.perf_counter() - started) / 60

    table, metrics, _ = runs[0]
    full = table[table.strategy == "full"].iloc[0]
    lines, checks = table_lines(table), []
    if len(runs) == 1:
        for _, row in table[table.strategy == "agent"].iterrows():
            margin = metrics[f"test/agent_vs_confidence_uar_lambda{row.setting:g}"]
            checks.append(
                goal_check(
                    row.setting, row.uar, row.fraction_mean, full.uar, f"{100 * margin:+.1f} points"
                )
            )
    else:
        lines += [
            "",
            f"Agents over seeds {' '.join(args.seeds)} (mean ± std; the table above is seed "
            f"{args.seeds[0]}):",
            "",
            "| λ | UAR | mean fraction of speech heard | points above the confidence baseline |",
            "|---|---|---|---|",
        ]
        for lam in table[table.strategy == "agent"].setting:
            rows = pd.DataFrame(
                [t[(t.strategy == "agent") & (t.setting == lam)].iloc[0] for t, _, _ in runs]
            )
            margins = pd.Series(
                [100 * m[f"test/agent_vs_confidence_uar_lambda{lam:g}"] for _, m, _ in runs]
            )
            spread = (
                f"{margins.mean():+.1f} ± {margins.std():.1f} "
                f"({margins.min():+.1f} to {margins.max():+.1f})"
            )
            lines.append(
                f"| {lam:g} | {rows.uar.mean():.3f} ± {rows.uar.std():.3f} | "
                f"{rows.fraction_mean.mean():.2f} ± {rows.fraction_mean.std():.2f} | {spread} |"
            )
            checks.append(
                goal_check(
                    lam, rows.uar.mean(), rows.fraction_mean.mean(), full.uar, f"{spread} points"
                )
            )
    corpus = "RAVDESS (8 classes, speaker-independent hold-out)" if ravdess else "synthetic corpus"
    flags = [
        *(["--wait-costs", *args.wait_costs] if args.wait_costs != WAIT_COSTS else []),
        *(["--seeds", *args.seeds] if args.seeds else []),
        *extra,
    ]
    block = "\n".join(
        [
            BEGIN,
            f"Test speakers of {corpus}; {minutes:.0f} minutes on {os.cpu_count()} CPU cores "
            f"(`python scripts/bench_emorl.py {' '.join(flags)}`).",
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

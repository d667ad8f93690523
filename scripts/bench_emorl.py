"""Emo-RL benchmark: accuracy against audio consumed on held-out speakers, written into the
documentation's Emo-RL page (docs/emorl.md, between its bench_emorl markers) as a markdown
table, with the trade-off plot copied to docs/img/.

One `python -m ser.rl.train` run (a causal CNN-LSTM trained first, then one DQN agent per
lambda) on RAVDESS (8 classes, speaker-independent hold-out) where ../shared/data/ravdess
exists, else on the synthetic corpus. Prints the goal checks side by side:
agent UAR within 2 points of the full utterance at <= 60 % of the speech heard, and the agent
above the confidence-threshold baseline at the same amount of audio.

With `--seeds A B C` the agents are trained once per seed on the same classifier (trained in
the first run, reused by the others) and the same split (`protocol.seed=A`), and the checks use
each lambda's mean over seeds: with a few hundred episodes one DQN run is not a measurement.
With `--folds K` that is done on each of K speaker folds (`protocol=kfold_speaker`, a
classifier per fold, `--val-speakers` of the other folds' speakers for the agents' episodes),
and the tables, checks and plot use the mean over every fold and seed. `--classifiers` gives
one trained streaming classifier per fold (in fold order; one for a hold-out) to reuse instead
of training them again. `--work-dir DIR` keeps every run there, and a rerun with the same
folder reuses the runs that finished (a benchmark of hours survives an interruption);
`--finished-only` reports those runs and runs no other.

With `--design joint` it benchmarks the second design instead (`rl=joint`: the classifier
and its stopping policy trained together, one model per λ and seed): per λ the joint model's
UAR and share heard (mean over folds and seeds) against the same model's full utterance, and
against the falling threshold fitted on its validation streams at the same audio; written
between the page's bench_emorl_joint markers, the plot to docs/img/emorl_tradeoff_joint.png.

    python scripts/bench_emorl.py [--root ../shared/data/ravdess] [--wait-costs 0.02 0.05 0.1 0.2]
        [--seeds 42 1 2] [--folds 6 [--val-speakers 3]] [--classifiers A.ckpt ...]
        [--design dqn|joint] [--page docs/emorl.md] [--image docs/img/emorl_tradeoff.png]
        [--work-dir DIR [--finished-only]] [-- extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from ser.rl.evaluate import FITTED_BUDGETS, plot_tradeoff

REPO = Path(__file__).resolve().parents[1]
# The page whose markers hold the table.
PAGE = REPO / "docs" / "emorl.md"
BEGIN, END = "<!-- bench_emorl:begin -->", "<!-- bench_emorl:end -->"
JOINT_BEGIN, JOINT_END = "<!-- bench_emorl_joint:begin -->", "<!-- bench_emorl_joint:end -->"
WAIT_COSTS = ["0.02", "0.05", "0.1", "0.2"]
# --finished-only: report the runs that finished in --work-dir, and run nothing.
FINISHED_ONLY = False


def run_agents(
    tmp: str, base: list[str], env: dict, experiment: str, name: str, overrides: list[str]
) -> tuple[pd.DataFrame, dict, Path] | None:
    """One `ser.rl.train` run in the shared root `tmp`, its outputs in `tmp/name`; its
    decisions table, metrics and the directory its artifacts were downloaded to (None for a
    run not finished with --finished-only)."""
    out = Path(tmp) / name
    done = out / "bench_run.json"  # written last: a run cut short is run again
    if done.is_file():
        print(f"reusing the finished run in {out}")
        metrics = json.loads(done.read_text())
        return pd.read_csv(out / "dl" / "decisions.csv"), metrics, out / "dl"
    if FINISHED_ONLY:
        return None
    command = [*base, f"hydra.run.dir={out}", *overrides]
    subprocess.run(command, cwd=tmp, env=env, check=True)
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    ids = [client.get_experiment_by_name(experiment).experiment_id]
    (run,) = client.search_runs(ids, order_by=["start_time DESC"], max_results=1)
    local = Path(client.download_artifacts(run.info.run_id, "", f"{out}/dl"))
    done.write_text(json.dumps(run.data.metrics))
    return pd.read_csv(local / "decisions.csv"), run.data.metrics, local


def fold_runs(
    tmp: str, base: list[str], env: dict, experiment: str, seeds: list[str] | None, fold: list[str]
) -> list[tuple[pd.DataFrame, dict, Path] | None]:
    """The runs of one split (`fold` overrides): one, or one per agent seed, all reading the
    classifier the first of them trained (and its split, `protocol.seed=` the first seed)."""
    tag = "-".join(o.split("=")[1] for o in fold if o.startswith("rl.fold=")) or "holdout"
    if seeds is None:
        return [run_agents(tmp, base, env, experiment, tag, fold)]
    first, *others = seeds
    split = [*fold, f"protocol.seed={first}"]
    runs = [run_agents(tmp, base, env, experiment, f"{tag}-seed{first}", [f"seed={first}", *split])]
    if "rl=joint" in base:  # each seed trains its own joint models, on the same split
        for seed in others:
            name = f"{tag}-seed{seed}"
            runs.append(run_agents(tmp, base, env, experiment, name, [f"seed={seed}", *split]))
        return runs
    # the classifier the first run trained, unless one was given (`rl.classifier=`)
    given = any(o.startswith("rl.classifier=") for o in [*base, *fold])
    ckpt = Path(tmp) / f"{tag}-seed{first}" / "classifier.ckpt"
    for seed in others:
        reuse = [f"seed={seed}", *split, *([] if given else [f"rl.classifier={ckpt}"])]
        runs.append(run_agents(tmp, base, env, experiment, f"{tag}-seed{seed}", reuse))
    return runs


def mean_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Every strategy's row averaged over runs (baselines repeat across the seeds of a split,
    so with equal seeds per fold each fold weighs the same)."""
    stacked = pd.concat(tables)
    mean = stacked.groupby(["strategy", "setting"], sort=False).mean(numeric_only=True)
    return mean.reset_index()


def table_lines(table: pd.DataFrame) -> list[str]:
    lines = [
        "| strategy | setting | UAR | WA | mean fraction of speech heard | mean seconds heard |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        named = {
            "agent": f"λ = {row.setting:g}",
            "settled": "oracle",
            "fitted": f"≤ {row.setting:g}",
        }
        setting = named.get(row.strategy, f"{row.setting:g}")
        lines.append(
            f"| {row.strategy} | {setting} | {row.uar:.3f} | {row.wa:.3f} | "
            f"{row.fraction_mean:.2f} | {row.seconds_mean:.2f} |"
        )
    return lines


def goal_check(lam: float, uar: float, fraction: float, full: float, margin: str) -> str:
    within = full - uar <= 0.02 + 1e-9 and fraction <= 0.60 + 1e-9  # exactly 2 points counts
    return (
        f"λ = {lam:g}: UAR {uar:.3f} vs full {full:.3f} ({100 * (uar - full):+.1f} points) at "
        f"{100 * fraction:.0f} % heard -> goal {'met' if within else 'NOT met'}; vs the "
        f"confidence baseline at the same audio: {margin}"
    )


def run_order(names: pd.Series) -> pd.Series:
    """Runs named fold-seedS ("0-seed42", "holdout-seed1") in fold, then seed, order."""
    return names.map(lambda n: tuple(int(p) if p.isdigit() else p for p in n.split("-seed")))


def joint_report(runs: list[tuple[pd.DataFrame, dict, Path]], image: Path) -> tuple[list, list]:
    """The joint design's lines and goal checks: per λ, mean (± std) over the runs of its UAR
    and share heard, its own full-utterance UAR and its margin over the fitted falling
    threshold at the same audio; and the trade-off plot of the means."""
    lams = sorted({float(k.rsplit("lambda", 1)[1]) for _, m, _ in runs for k in m
                   if k.startswith("test/joint_uar_lambda")})  # fmt: skip
    lines = [
        "| λ | runs | UAR at the stop | mean fraction of speech heard | the same model's full UAR "
        "| points above the fitted threshold at the same audio |",
        "|---|---|---|---|---|---|",
    ]
    checks, points, per_run = [], [], []
    for lam in lams:
        tag = f"lambda{lam:g}"
        # Runs of several invocations (--finished-only over several --work-dir folders) may
        # each have trained other λs: a λ is averaged over the runs that trained it.
        have = [(m, local) for _, m, local in runs if f"test/joint_uar_{tag}" in m]
        frame = pd.DataFrame(
            [
                {
                    "run": local.parent.name,
                    "uar": m[f"test/joint_uar_{tag}"],
                    "fraction": m[f"test/joint_fraction_{tag}"],
                    "full": m[f"test/joint_full_uar_{tag}"],
                    "fitted": 100 * m[f"test/joint_vs_fitted_uar_{tag}"],
                }
                for m, local in have
            ]
        )
        spread = (
            f"{frame.fitted.mean():+.1f} ± {frame.fitted.std():.1f} "
            f"({frame.fitted.min():+.1f} to {frame.fitted.max():+.1f})"
        )
        lines.append(
            f"| {lam:g} | {len(frame)} | {frame.uar.mean():.3f} ± {frame.uar.std():.3f} | "
            f"{frame.fraction.mean():.2f} ± {frame.fraction.std():.2f} | "
            f"{frame.full.mean():.3f} | {spread} |"
        )
        check = goal_check(lam, frame.uar.mean(), frame.fraction.mean(), frame.full.mean(), "")
        above = frame.fitted.mean() > 0
        checks.append(
            check.split("; vs the")[0]
            + f"; {'above' if above else 'NOT above'} the fitted falling threshold at the same "
            f"audio: {spread} points"
        )
        points.append((lam, frame))
        per_run += [
            f"| {lam:g} | {r.run} | {r.uar:.3f} | {r.fraction:.2f} | {r.full:.3f} | "
            f"{r.fitted:+.1f} |"
            for r in frame.sort_values("run", key=run_order).itertuples()
        ]
    chosen = pd.Series([m["test/joint_wait_cost"] for _, m, _ in runs]).value_counts()
    lines += [
        "",
        "(mean ± std over the runs that trained each λ; the range in brackets.) The "
        "validation speakers chose each run's operating point among the λs it trained (the "
        "largest λ within 2 points of the full utterance on them): "
        + ", ".join(f"λ = {lam:g} in {n} run(s)" for lam, n in sorted(chosen.items()))
        + ".",
        "",
        "| λ | run (fold-seed) | UAR at the stop | fraction heard | the same model's full UAR "
        "| points above the fitted threshold |",
        "|---|---|---|---|---|---|",
        *per_run,
    ]
    baselines = mean_table([t.drop(columns="wait_cost") for t, _, _ in runs])
    baselines = baselines[baselines.strategy.isin(["full", "fixed", "confidence", "fitted"])]
    # The shared budgets only: each run also fits one at its own share heard, which would
    # average over one run each.
    baselines = baselines[(baselines.strategy != "fitted") | baselines.setting.isin(FITTED_BUDGETS)]
    agents = pd.DataFrame(
        [
            {"strategy": "agent", "setting": lam, "uar": f.uar.mean(),
             "fraction_mean": f.fraction.mean()}
            for lam, f in points
        ]
    )  # fmt: skip
    plot_tradeoff(
        pd.concat([baselines, agents], ignore_index=True),
        image,
        title=f"Joint design, mean over {len(runs)} runs (baselines: mean over the λ models)",
        agent_label="joint model's stop",
    )
    return lines, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--wait-costs", nargs="+", default=WAIT_COSTS)
    parser.add_argument("--seeds", nargs="+", default=None, help="agent seeds (default: one run)")
    parser.add_argument(
        "--folds", type=int, default=None, help="speaker folds (default: one hold-out split)"
    )
    parser.add_argument("--val-speakers", type=int, default=3, help="per fold, with --folds")
    parser.add_argument(
        "--classifiers", nargs="+", default=None, help="a trained classifier per fold, reused"
    )
    parser.add_argument(
        "--design", choices=["dqn", "joint"], default="dqn", help="which Emo-RL design"
    )
    parser.add_argument("--page", type=Path, default=PAGE, help="the page with the markers")
    parser.add_argument(
        "--work-dir",
        type=Path,
        nargs="+",
        default=None,
        help="keep every run here (default: a temporary folder); a rerun reuses finished runs; "
        "with --finished-only, several folders are reported together",
    )
    parser.add_argument("--image", type=Path, default=None, help="the trade-off plot's PNG")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="with --work-dir: report the runs that finished there, and run no other",
    )
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if args.finished_only and not args.work_dir:
        parser.error("--finished-only reports the runs of a --work-dir")
    if args.work_dir and len(args.work_dir) > 1:
        if not args.finished_only:
            parser.error("runs go to one --work-dir; several are reported with --finished-only")
        if args.design != "joint":  # its table needs every agent λ in every run
            parser.error("several --work-dir folders are reported together with --design joint")
    global FINISHED_ONLY
    FINISHED_ONLY = args.finished_only
    joint = args.design == "joint"
    if joint and args.classifiers:
        parser.error("--classifiers reuses DQN-design classifiers; the joint design trains its own")
    name = "emorl_tradeoff_joint.png" if joint else "emorl_tradeoff.png"
    args.image = args.image or REPO / "docs" / "img" / name
    ravdess = args.root.is_dir()
    dataset = ["dataset=ravdess"] if ravdess else []
    experiment = f"ser-{'ravdess' if ravdess else 'synthetic'}-rl"
    folds = [[]]
    if args.folds:
        protocol = [
            "protocol=kfold_speaker",
            f"protocol.n_folds={args.folds}",
            f"protocol.val_speakers={args.val_speakers}",
        ]
        folds = [[*protocol, f"rl.fold={k}"] for k in range(args.folds)]
    if args.classifiers:
        if len(args.classifiers) != len(folds):
            parser.error(f"--classifiers needs {len(folds)} checkpoint(s), one per fold")
        folds = [[*f, f"rl.classifier={c}"] for f, c in zip(folds, args.classifiers, strict=True)]
    started = time.perf_counter()
    runs, fulls = [], []
    with contextlib.ExitStack() as stack:
        if args.work_dir:
            roots = [str(d.resolve()) for d in args.work_dir]
            if not args.finished_only:  # a report creates no folder
                Path(roots[0]).mkdir(parents=True, exist_ok=True)
        else:
            roots = [stack.enter_context(tempfile.TemporaryDirectory())]
        env = {**os.environ, "RAVDESS_ROOT": str(args.root)}
        env.pop("MLFLOW_TRACKING_URI", None)
        for tmp in roots:
            base = [
                sys.executable,
                "-m",
                "ser.rl.train",
                *dataset,
                *(["rl=joint"] if joint else []),
                f"paths.root_dir={tmp}",
                "callbacks.progress_bar=null",
                f"rl.wait_costs=[{','.join(args.wait_costs)}]",
                *extra,
            ]
            for fold in folds:
                split_runs = fold_runs(tmp, base, env, experiment, args.seeds, fold)
                finished = [r for r in split_runs if r is not None]
                if not finished:
                    continue
                fulls.append(finished[0][0].query("strategy == 'full'").uar.iloc[0])
                runs += finished
        if not runs:
            parser.error(f"no finished run in {' '.join(map(str, args.work_dir))}")
        args.image.parent.mkdir(parents=True, exist_ok=True)
        if len(runs) == 1 and not joint:
            shutil.copyfile(runs[0][2] / "accuracy_vs_audio.png", args.image)
    minutes = (time.perf_counter() - started) / 60

    if joint:
        lines, checks = joint_report(runs, args.image)
        write_block(args, folds, runs, minutes, corpus_name(args), lines, checks, extra, True)
        return
    table = mean_table([t for t, _, _ in runs])
    full = table[table.strategy == "full"].iloc[0]
    lines, checks = table_lines(table), []
    if len(runs) == 1:
        metrics = runs[0][1]
        for _, row in table[table.strategy == "agent"].iterrows():
            margin = metrics[f"test/agent_vs_confidence_uar_lambda{row.setting:g}"]
            checks.append(
                goal_check(
                    row.setting, row.uar, row.fraction_mean, full.uar, f"{100 * margin:+.1f} points"
                )
            )
    else:
        seeds = f"agent seeds {' '.join(args.seeds)}" if args.seeds else "one agent seed"
        over = f"{len(folds)} speaker folds × {seeds}" if args.folds else seeds
        lines = [f"Each row is the mean over {len(runs)} runs ({over}).", "", *lines]
        if args.folds:
            per_fold = ", ".join(f"{u:.3f}" for u in fulls)
            lines += ["", f"Full-utterance UAR per fold: {per_fold}."]
        lines += [
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
        lines += ["", f"(mean ± std over the {len(runs)} runs; the range in brackets)"]
        plot_tradeoff(table, args.image, title=f"mean over {len(runs)} runs")
    write_block(args, folds, runs, minutes, corpus_name(args), lines, checks, extra)


def corpus_name(args: argparse.Namespace) -> str:
    split = f"{args.folds} speaker folds" if args.folds else "speaker-independent hold-out"
    return f"RAVDESS (8 classes, {split})" if args.root.is_dir() else f"synthetic corpus ({split})"


def write_block(
    args: argparse.Namespace,
    folds: list,
    runs: list,
    minutes: float,
    corpus: str,
    lines: list[str],
    checks: list[str],
    extra: list[str],
    joint: bool = False,
) -> None:
    """Print the benchmark's block and write it between the page's markers."""
    several = args.work_dir is not None and len(args.work_dir) > 1
    dirs = [f"DIR{i + 1}" for i in range(len(args.work_dir))] if several else ["DIR"]
    flags = [
        *(["--design", "joint"] if joint else []),
        *(["--wait-costs", *args.wait_costs] if args.wait_costs != WAIT_COSTS else []),
        *(["--seeds", *args.seeds] if args.seeds else []),
        *(["--folds", str(args.folds)] if args.folds else []),
        *(["--val-speakers", str(args.val_speakers)] if args.val_speakers != 3 else []),
        *(["--classifiers", *args.classifiers] if args.classifiers else []),
        *(["--work-dir", *dirs, "--finished-only"] if args.finished_only else []),
        *extra,
    ]
    begin, end = (JOINT_BEGIN, JOINT_END) if joint else (BEGIN, END)
    took = f"{minutes:.0f} minutes on {os.cpu_count()} CPU cores"
    if args.finished_only:
        took = "the runs' time is not measured by a report of finished runs"
    seeds = f"seeds {' '.join(args.seeds)}" if args.seeds else "one seed"
    over = f"{len(runs)} runs: {len(folds)} split(s) × {seeds}"
    if args.finished_only:
        names = ", ".join(local.parent.name for _, _, local in runs)
        if several:  # every folder holds the same splits and seeds, with other λs
            names = f"{len(dirs)} folders, {', '.join(dirs)}, the runs of each command"
        over = f"{len(runs)} finished runs of {len(folds)} split(s) × {seeds} ({names})"
    block = "\n".join(
        [
            begin,
            f"Test speakers of {corpus}, {over}; {took} "
            f"(`python scripts/bench_emorl.py {' '.join(flags)}`).",
            "",
            *lines,
            "",
            *[f"- {c}" for c in checks],
            "",
        ]
    )
    print(block)
    text = args.page.read_text()
    if begin in text:
        start, stop = text.index(begin), text.index(end)
        args.page.write_text(text[:start] + block + text[stop:])
        print(f"updated {args.page}")


if __name__ == "__main__":
    main()

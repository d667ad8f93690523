"""Speaker-independent accuracy on RAVDESS (8 classes, 6 folds of 4 actors), written into the
documentation's results page (docs/results.md, between its bench_accuracy markers) as a
markdown table.

Each row is one `python train.py dataset=ravdess protocol=kfold_speaker model=... features=...`
run (an MLflow parent with 6 fold runs). Columns: UAR mean and std with normalisation fitted on
the training speakers only, and, separately, with per-speaker normalisation
(`features.speaker_norm=true`, which uses each test speaker's own unlabelled audio).

    python scripts/bench_accuracy.py [--root ../shared/data/ravdess] [--models svm:pyaa mlp:logmel
        experiment=ravdess_mlp_compare] [--speaker-norm svm:pyaa ... | --no-speaker-norm]
        [--page docs/results.md] [-- extra Hydra overrides]

With no arguments it runs the whole benchmark: the best model and the five required rows, with
the per-speaker column for the SVM (the nets' and the best model's per-speaker runs would take
it past 90 minutes; add them with --speaker-norm).
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
BEST = "experiment=ravdess_mlp_compare"
# The best model first: its row is the one a shortened run should not miss.
DEFAULT_MODELS = [BEST, "svm:pyaa", "mlp:logmel", "cnn:logmel", "lstm:logmel", "cnn_lstm:logmel"]
# The SVM's per-speaker run takes seconds; the best model's would add about 21 minutes and take
# the whole benchmark past its 90-minute budget (docs/results.md, "Time").
DEFAULT_SPEAKER_NORM = ["svm:pyaa"]
# The page whose markers hold the table.
PAGE = REPO / "docs" / "results.md"
BEGIN, END = "<!-- bench_accuracy:begin -->", "<!-- bench_accuracy:end -->"
WHOLE = "The whole benchmark"
HEADER = [
    "model",
    "features",
    "overrides",
    "UAR, train-only normalisation",
    "WA",
    "macro-F1",
    "UAR, per-speaker normalisation",
    "minutes",
]


def run(root: Path, ravdess: Path, spec: str, extra: list[str]) -> dict:
    """One cross-validated run of a `model:features` pair or an `experiment=NAME`; returns the
    parent run's metrics, its model and features, and the wall time."""
    if spec.startswith("experiment="):
        choice = [spec]
    else:
        model, features = spec.split(":")
        choice = [
            "dataset=ravdess",
            "protocol=kfold_speaker",
            f"model={model}",
            f"features={features}",
        ]
    env = {**os.environ, "SER_ROOT": str(root), "RAVDESS_ROOT": str(ravdess)}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [
        sys.executable,
        str(REPO / "train.py"),
        *choice,
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
    tags = parents[0].data.tags
    return {**parents[0].data.metrics, "seconds": seconds} | {
        "model": tags["model"],
        "features": tags["features"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument(
        "--models", nargs="+", default=DEFAULT_MODELS, help="model:features or experiment=NAME"
    )
    parser.add_argument(
        "--speaker-norm",
        nargs="*",
        default=None,
        help="rows that also get the per-speaker column (default: the SVM of the default list; "
        "all of --models when --models is given)",
    )
    parser.add_argument("--no-speaker-norm", action="store_true")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page with the markers")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if args.no_speaker_norm:
        speaker_norm = set()
    elif args.speaker_norm is not None:
        speaker_norm = set(args.speaker_norm)
    else:
        default = args.models == DEFAULT_MODELS
        speaker_norm = set(DEFAULT_SPEAKER_NORM if default else args.models)
    if not args.root.is_dir():
        sys.exit(f"error: RAVDESS not found at {args.root}; pass --root")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            train_only = run(Path(tmp), args.root, spec, extra)
            norm = (
                run(Path(tmp), args.root, spec, [*extra, "features.speaker_norm=true"])
                if spec in speaker_norm
                else None
            )
            model, features = train_only["model"], train_only["features"]
            # An experiment row is named by its experiment; a model:features row by its cells.
            named = [spec] if spec.startswith("experiment=") else []
            overrides = " ".join(named + extra) or "-"
            rows.append((model, features, overrides, train_only, norm))
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
    new_rows = {}
    for model, features, overrides, m, norm in rows:
        speaker = f"{norm['test/uar_mean']:.3f} ± {norm['test/uar_std']:.3f}" if norm else "-"
        spent = (m["seconds"] + (norm["seconds"] if norm else 0)) / 60
        new_rows[(model, features, overrides)] = (
            f"| {model} | {features} | {overrides} | **{m['test/uar_mean']:.3f} ± "
            f"{m['test/uar_std']:.3f}** | {m['test/wa_mean']:.3f} | "
            f"{m['test/f1_mean']:.3f} | {speaker} | {spent:.1f} |"
        )
    print("\n".join(new_rows.values()))
    print(f"{minutes:.0f} minutes on {os.cpu_count()} CPU cores")
    whole = None
    if args.models == DEFAULT_MODELS and speaker_norm == set(DEFAULT_SPEAKER_NORM) and not extra:
        whole = (
            f"{WHOLE} (`python scripts/bench_accuracy.py` with no arguments: the best model and "
            "the five required rows, with the SVM's per-speaker run) took "
            f"{minutes:.0f} minutes on {os.cpu_count()} CPU cores, in one run."
        )
    text = args.page.read_text()
    if BEGIN in text:
        block = text[text.index(BEGIN) : text.index(END)]
        args.page.write_text(text.replace(block, table_block(block, new_rows, whole)))
        print(f"updated {args.page}")


def table_block(
    block: str, new_rows: dict[tuple[str, str, str], str], whole: str | None = None
) -> str:
    """The page's block with `new_rows` replacing the rows of the same model, features and
    overrides (other rows are kept, so models can be benchmarked one run at a time), and the
    whole benchmark's time: `whole` if given, else the sentence already in the block."""
    kept = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(HEADER) and cells[0] != HEADER[0]:
            kept[(cells[0], cells[1], cells[2])] = line
        elif line.startswith(WHOLE) and whole is None:
            whole = line
    merged = {**kept, **new_rows}
    return "\n".join(
        [
            BEGIN,
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER),
            *merged.values(),
            "",
            "Each row: `python scripts/bench_accuracy.py --models MODEL:FEATURES|experiment=NAME "
            "[-- OVERRIDES]`; minutes are the row's own (both columns).",
            *([whole] if whole else []),
            "",
        ]
    )


if __name__ == "__main__":
    main()

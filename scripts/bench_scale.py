"""How extraction, training and a sweep scale from 1 worker to N (default 2), side by side.

    python scripts/bench_scale.py [--root ../shared/data/ravdess] [--limit N]
        [--features compare] [--workers 2] [--parts extraction training sweep]
        [--epochs 10] [--trials 4]

Every side runs the real command lines, started at the same moment, and its wall time runs
from their start until the last exits (Python's start-up and imports included, as a job's):

- extraction: RAVDESS (`python -m ser.features dataset=ravdess features=compare
  features.n_jobs=1 data.manifest=...`) into an empty cache, once as one process and once as N
  processes, process I with `features.shard=I/N`, as the tasks of a SLURM array job start
  (started directly, not through `hydra/launcher=submitit_local`, which adds its own start-up
  per job; the tests cover that path). The manifest is RAVDESS's (protocol=holdout, sorted by
  path), written once, and its files read once before either side (the page cache);
  --limit N keeps N files evenly spaced through it, so that every split still has its
  speakers' files. Also says whether the two caches hold the same files.
- training: `python train.py trainer=ddp trainer.accelerator=cpu trainer.devices=1|N` for
  `--epochs` epochs on the synthetic corpus (its features cached first), no early stopping.
- sweep: one Optuna study of `--trials` trials (`hparams_search=optuna debug=fast` on a journal
  file), run by one `python train.py -m` process and by N of them sharing the study.

Prints the core count, each part's wall times side by side and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_features import DEFAULT_ROOT, load_average

REPO = Path(__file__).resolve().parents[1]
DONE_MARK = " files have "


PARTS = ("extraction", "training", "sweep")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("RAVDESS_ROOT") or DEFAULT_ROOT),
        help="RAVDESS speech root (default: $RAVDESS_ROOT, else ../shared/data/ravdess)",
    )
    parser.add_argument("--limit", type=int, default=None, help="N files, evenly spaced")
    parser.add_argument("--features", default="compare", help="feature set (conf/features)")
    parser.add_argument("--workers", type=int, default=2, help="shards against 1 worker")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--trials", type=int, default=4, help="trials of the sweep's study")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error(f"--workers {args.workers}: give 2 or more (1 worker is always measured)")
    if args.limit is not None and args.limit < args.workers:
        parser.error(f"--limit {args.limit}: give at least --workers ({args.workers}) files")

    cores = len(os.sched_getaffinity(0))
    print(f"load average before: {load_average()}")
    print(f"{cores} cores (os.cpu_count() {os.cpu_count()}); 1 worker against {args.workers}")
    same = True
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as scratch:
        work = Path(scratch)
        if "extraction" in args.parts:
            same = bench_extraction(args, work)
        if "training" in args.parts:
            bench_training(args, work)
        if "sweep" in args.parts:
            bench_sweep(args, work)
    print(f"load average after: {load_average()}")
    return 0 if same else 1


def bench_extraction(args: argparse.Namespace, work: Path) -> bool:
    """Extraction into an empty cache by 1 process and by N shards; True if the two caches
    hold the same files, byte for byte."""
    manifest = work / "manifest.csv"
    files = write_manifest(args.root, args.limit, manifest)
    # Read every file once first: otherwise the first side alone reads them from disk.
    for path in pd.read_csv(manifest)["path"]:
        Path(path).read_bytes()
    print(
        f"\nextraction: features={args.features}, {files} RAVDESS files under {args.root}; each "
        "side into an empty cache, every process with features.n_jobs=1"
    )
    common = [
        sys.executable, "-m", "ser.features", "dataset=ravdess", f"features={args.features}",
        "features.n_jobs=1", f"data.manifest={manifest}", f"paths.root_dir={work}",
    ]  # fmt: skip
    walls: dict[int, float] = {}
    for workers in (1, args.workers):
        commands = [
            [*common, f"paths.feature_cache_dir={work / f'cache_{workers}'}",
             f"hydra.run.dir={work / f'run_{workers}_{i}'}",
             *([f"features.shard={i}/{workers}"] if workers > 1 else [])]
            for i in range(workers)
        ]  # fmt: skip
        walls[workers], outputs = run_at_once(commands, work)
        # "64 of 64 files have compare features in ...", one line a process
        done = sum(int(line.split()[0]) for out in outputs for line in out.splitlines()
                   if DONE_MARK in line)  # fmt: skip
        label = "1 worker" if workers == 1 else f"{workers} workers ({workers} shards)"
        wall = walls[workers]
        print(f"  {label:<26} {done:5d} files {wall:8.1f} s wall {done / wall:7.1f} files/s")
    print_ratio(walls, args.workers)
    same = cache_files(work / "cache_1") == cache_files(work / f"cache_{args.workers}")
    print(f"  the two caches hold the same files, byte for byte: {'yes' if same else 'NO'}")
    return same


def synthetic(work: Path) -> list[str]:
    """Overrides for runs on the synthetic corpus in `work`, its features cached once first
    (so that neither side pays for generating the corpus or extracting it)."""
    overrides = [f"paths.data_dir={work / 'data'}", "callbacks.progress_bar=null"]
    if not (work / "warm-up").is_dir():  # the sweep reuses what the training part cached
        warm_up = [sys.executable, "-m", "ser.features", *overrides, f"paths.root_dir={work}",
                   f"hydra.run.dir={work / 'warm-up'}"]  # fmt: skip
        run_at_once([warm_up], work)
    return overrides


def bench_training(args: argparse.Namespace, work: Path) -> None:
    """DDP training on CPU with 1 process and with N (Lightning starts them)."""
    overrides = synthetic(work)
    print(
        f"\ntraining: python train.py trainer=ddp trainer.accelerator=cpu, {args.epochs} epochs "
        "on the synthetic corpus, no early stopping (each process takes its share of the batches)"
    )
    walls: dict[int, float] = {}
    for workers in (1, args.workers):
        command = [
            sys.executable, str(REPO / "train.py"), *overrides, "trainer=ddp",
            "trainer.accelerator=cpu", f"trainer.devices={workers}",
            f"trainer.max_epochs={args.epochs}", "callbacks.early_stopping=null",
            f"paths.root_dir={work / f'train_{workers}'}",
            f"hydra.run.dir={work / f'train_{workers}' / 'run'}",
        ]  # fmt: skip
        walls[workers], _ = run_at_once([command], work)
        label = "1 process" if workers == 1 else f"{workers} processes"
        print(f"  {label:<26} {walls[workers]:8.1f} s wall")
    print_ratio(walls, args.workers)


def bench_sweep(args: argparse.Namespace, work: Path) -> None:
    """One Optuna study of `args.trials` trials, run by 1 worker process and by N at once."""
    overrides = synthetic(work)
    print(
        f"\nsweep: one Optuna study of {args.trials} trials (python train.py -m "
        "hparams_search=optuna debug=fast, a journal file), 1 worker process against "
        f"{args.workers} sharing it"
    )
    walls: dict[int, float] = {}
    for workers in (1, args.workers):
        root = work / f"sweep_{workers}"
        root.mkdir()
        command = [
            sys.executable, str(REPO / "train.py"), "-m", "hparams_search=optuna", "debug=fast",
            *overrides, f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.study_name=bench",
            f"hydra.sweeper.storage={root / 'optuna.journal'}", f"paths.root_dir={root}",
        ]  # fmt: skip
        commands = [[*command, f"hydra.sweep.dir={root / f'worker{i}'}"] for i in range(workers)]
        walls[workers], _ = run_at_once(commands, work)
        label = "1 worker" if workers == 1 else f"{workers} workers"
        print(f"  {label:<26} {walls[workers]:8.1f} s wall")
    print_ratio(walls, args.workers)


def print_ratio(walls: dict[int, float], workers: int) -> None:
    cores = len(os.sched_getaffinity(0))
    print(
        f"  ratio 1 worker / {workers} workers: {walls[1] / walls[workers]:.2f}x wall "
        f"(ideal {min(workers, cores)}x on {cores} cores)"
    )


def write_manifest(root: Path, limit: int | None, out: Path) -> int:
    """RAVDESS's manifest (protocol=holdout) sorted by path; `limit` rows evenly spaced
    through it (its first `limit` would be one actor's, and leave the other splits empty).
    Returns its number of files."""
    from hydra import compose, initialize_config_dir

    from ser.data.manifest import build_manifest
    from ser.data.manifest import write_manifest as write_csv
    from ser.project import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("prepare", overrides=["dataset=ravdess", f"dataset.loader.root={root}"])
    manifest = build_manifest(cfg).sort_values("path", ignore_index=True)
    if limit is not None and limit < len(manifest):
        manifest = manifest.iloc[[i * len(manifest) // limit for i in range(limit)]]
    write_csv(manifest, out)
    return len(manifest)


def run_at_once(commands: list[list[str]], cwd: Path) -> tuple[float, list[str]]:
    """Start every command at the same moment; the wall seconds until the last exits, and
    their outputs. A failed command stops the benchmark with its error."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(c, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate() for p in processes]
    wall = time.perf_counter() - start
    for command, process, (_, err) in zip(commands, processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return wall, [out for out, _ in outputs]


def cache_files(root: Path) -> dict[str, bytes]:
    """Every file under a cache folder, by its path relative to the folder."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


if __name__ == "__main__":
    raise SystemExit(main())

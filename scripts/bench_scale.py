"""Sharded feature extraction on RAVDESS: 1 worker against N (default 2), side by side.

    python scripts/bench_scale.py [--root ../shared/data/ravdess] [--limit N]
        [--features compare] [--workers 2]

Both sides run the real command line, `python -m ser.features dataset=ravdess
features=compare features.n_jobs=1 data.manifest=...`, each into an empty cache of its own:
once as one process, and once as N processes started at the same moment, process I with
`features.shard=I/N`, as the tasks of a SLURM array job start (started directly, not through
`hydra/launcher=submitit_local`, which adds its own start-up per job; the tests cover that
path). The manifest is RAVDESS's (protocol=holdout, sorted by path), written once; --limit N
keeps N files evenly spaced through it, so that every split still has its speakers' files.
A side's wall time runs from its start until its last process exits, so it includes Python's
start-up and imports, as a job's does. Prints the core count, the wall times and files/s side
by side, the ratio, and whether the two caches hold the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_features import DEFAULT_ROOT, load_average

# "64 of 64 files have compare features in ... (0 were cached already)", one line a process.
DONE_MARK = " files have "


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
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error(f"--workers {args.workers}: give 2 or more (1 worker is always measured)")
    if args.limit is not None and args.limit < args.workers:
        parser.error(f"--limit {args.limit}: give at least --workers ({args.workers}) files")

    with tempfile.TemporaryDirectory(prefix="bench_scale_") as scratch:
        work = Path(scratch)
        manifest = work / "manifest.csv"
        files = write_manifest(args.root, args.limit, manifest)
        cores = len(os.sched_getaffinity(0))
        print(f"load average before: {load_average()}")
        print(
            f"features={args.features}: {files} RAVDESS files under {args.root}, {cores} cores "
            f"(os.cpu_count() {os.cpu_count()}); each side into an empty cache, every process "
            "with features.n_jobs=1, its start-up included"
        )
        walls: dict[int, float] = {}
        for workers in (1, args.workers):
            wall, done = run_side(workers, args.features, manifest, work)
            walls[workers] = wall
            label = "1 worker" if workers == 1 else f"{workers} workers ({workers} shards)"
            print(f"{label:<24} {done:5d} files {wall:8.1f} s wall {done / wall:7.1f} files/s")
        print(
            f"ratio 1 worker / {args.workers} workers: {walls[1] / walls[args.workers]:.2f}x "
            f"wall (ideal {min(args.workers, cores)}x on {cores} cores)"
        )
        same = cache_files(work / "cache_1") == cache_files(work / f"cache_{args.workers}")
        print(f"the two caches hold the same files, byte for byte: {'yes' if same else 'NO'}")
        print(f"load average after: {load_average()}")
        return 0 if same else 1


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


def run_side(workers: int, features: str, manifest: Path, work: Path) -> tuple[float, int]:
    """Wall seconds until the last of `workers` processes (shards, or one unsharded process)
    exits, and the files they extracted between them."""
    common = [
        sys.executable, "-m", "ser.features", "dataset=ravdess", f"features={features}",
        "features.n_jobs=1", f"data.manifest={manifest}", f"paths.root_dir={work}",
        f"paths.feature_cache_dir={work / f'cache_{workers}'}",
    ]  # fmt: skip
    commands = [
        [*common, f"hydra.run.dir={work / f'run_{workers}_{i}'}"]
        + ([f"features.shard={i}/{workers}"] if workers > 1 else [])
        for i in range(workers)
    ]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(c, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate() for p in processes]
    wall = time.perf_counter() - start
    done = 0
    for command, process, (out, err) in zip(commands, processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
        (line,) = [x for x in out.splitlines() if DONE_MARK in x]
        done += int(line.split()[0])
    return wall, done


def cache_files(root: Path) -> dict[str, bytes]:
    """Every file under a cache folder, by its path relative to the folder."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput of ser's `pyaa` features against pyAudioAnalysis on RAVDESS, side by side.

    python scripts/bench_features.py [--root ../shared/data/ravdess] [--limit N]
        [--batch-size 32] [--pyaa-every 8] [--threads 1] [--check]

ser runs on every file (sorted by path, first --limit), in length-sorted, padded batches. The
pyAudioAnalysis reference is slow (a Python loop over frames), so it runs on a fixed subset:
every k-th file of that sorted list (k = --pyaa-every, from the first file). The ratio compares
like with like: ser is timed again on exactly that subset, batch by batch, interleaved with
pyAudioAnalysis on the same files, so both see the same machine load. Only feature computation
is timed (decoding is not). Real-time factor = compute seconds / audio seconds.
--check also reports the max relative error between the two on the subset, per feature group:
per feature row, max |ser - ref| / (max |ref| + 1e-10), maximised over files.

    python scripts/bench_features.py --parallel compare [--root ...] [--limit N]

times instead the whole corpus extraction of one feature group (decoding and the default
preprocessing included, as `python train.py` does it, into an empty cache) with
features.n_jobs=1 and with one worker process per core, side by side, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser.features.pyaa import FEATURE_NAMES, PyAAFeatures

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared/data/ravdess"
TINY = 1e-10
GROUPS = {
    "time/spectral (8)": slice(0, 8),
    "mfcc (13)": slice(8, 21),
    "chroma + std (13)": slice(21, 34),
    "deltas (34)": slice(34, 68),
}


@dataclass
class Timing:
    """Accumulated compute time of one side."""

    files: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def add(self, files: int, audio_s: float, wall_s: float, cpu_s: float) -> None:
        self.files += files
        self.audio_s += audio_s
        self.wall_s += wall_s
        self.cpu_s += cpu_s

    def line(self, label: str) -> str:
        return (
            f"{label:<28} {self.files:5d} files {self.audio_s:8.1f} s audio  "
            f"{self.wall_s:8.2f} s wall ({self.cpu_s:8.2f} s CPU)  "
            f"{self.files / self.wall_s:8.1f} files/s  RTF {self.wall_s / self.audio_s:.2e}"
        )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a timing."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def decode(path: Path) -> tuple[np.ndarray, int]:
    samples, sr = sf.read(path, dtype="int16")
    if samples.ndim > 1:
        raise ValueError(f"{path}: expected mono audio")
    return samples, sr


def batches(paths: list[Path], frames: dict[Path, int], size: int) -> Iterator[list[Path]]:
    """Length-sorted batches, so padding stays small."""
    ordered = sorted(paths, key=lambda p: frames[p])
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def run_ser(
    extractor: PyAAFeatures, waves: list[np.ndarray], device: torch.device
) -> tuple[list[np.ndarray], float, float]:
    """Features of a batch of int16 waves; returns per-file arrays, wall and CPU seconds."""
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w.astype(np.float32) / 2**15)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = extractor(batch.to(device), lengths.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        out = out.cpu()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    valid = extractor.num_frames(lengths).tolist()
    return [out[i, :n].numpy() for i, n in enumerate(valid)], wall, cpu


def run_pyaa(
    stf, samples: np.ndarray, sr: int, win: int, step: int
) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    feats, _ = stf.feature_extraction(samples, sr, win, step, deltas=True)
    return feats.T, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="RAVDESS speech root")
    parser.add_argument("--limit", type=int, default=None, help="first N files (sorted by path)")
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per ser batch")
    parser.add_argument(
        "--pyaa-every", type=int, default=8, help="pyAudioAnalysis on every k-th file (0: skip)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device for ser")
    parser.add_argument("--check", action="store_true", help="report max relative error")
    parser.add_argument("--list-files", action="store_true", help="print the subset's files")
    parser.add_argument(
        "--parallel", metavar="FEATURES", help="time corpus extraction with 1 and all cores"
    )
    args = parser.parse_args(argv)

    paths = sorted(args.root.glob("Actor_*/*.flac"))[: args.limit]
    if not paths:
        print(f"no Actor_*/*.flac files under {args.root}", file=sys.stderr)
        return 1
    if args.parallel:
        return bench_parallel(paths, args.parallel)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = {p: sf.info(p) for p in paths}
    sr = info[paths[0]].samplerate
    if any(i.samplerate != sr for i in info.values()):
        print("files have different sample rates", file=sys.stderr)
        return 1
    extractor = PyAAFeatures(sample_rate=sr).to(device)
    win, step = extractor.win_length, extractor.hop_length
    n_samples = {p: info[p].frames for p in paths}
    subset = paths[:: args.pyaa_every] if args.pyaa_every > 0 else []

    print(f"load average before: {load_average()}")
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {device}")
    print(
        f"ser: all {len(paths)} files under {args.root} (sorted by path), batch {args.batch_size}"
    )
    if subset:
        print(
            f"pyAudioAnalysis and ser (ratio): every k-th file of that list (k={args.pyaa_every}), "
            f"from the first: {len(subset)} files ({subset[0].name} ... {subset[-1].name})"
        )
        if args.list_files:
            print("\n".join(f"  {p.relative_to(args.root)}" for p in subset))

    # Warm-up (first-call allocations, FFT plans) outside the timings.
    run_ser(extractor, [decode(paths[0])[0]], device)

    full = Timing()
    for group in batches(paths, n_samples, args.batch_size):
        waves = [decode(p)[0] for p in group]
        _, wall, cpu = run_ser(extractor, waves, device)
        full.add(len(group), sum(len(w) for w in waves) / sr, wall, cpu)
    print(full.line("ser, all files"))

    if not subset:
        return 0
    from pyAudioAnalysis import ShortTermFeatures as stf  # benchmark-only dependency

    ser_sub, ref_sub = Timing(), Timing()
    errors = np.zeros(len(FEATURE_NAMES))
    for group in batches(subset, n_samples, args.batch_size):
        waves = [decode(p)[0] for p in group]
        audio_s = sum(len(w) for w in waves) / sr
        ours, wall, cpu = run_ser(extractor, waves, device)
        ser_sub.add(len(group), audio_s, wall, cpu)
        wall = cpu = 0.0
        for w, got in zip(waves, ours, strict=True):
            ref, w_s, c_s = run_pyaa(stf, w, sr, win, step)
            wall, cpu = wall + w_s, cpu + c_s
            if args.check:
                rel = np.abs(got - ref).max(0) / (np.abs(ref).max(0) + TINY)
                errors = np.maximum(errors, rel)
        ref_sub.add(len(group), audio_s, wall, cpu)
    print(ser_sub.line("ser, subset"))
    print(ref_sub.line("pyAudioAnalysis, subset"))
    print(
        f"throughput ratio ser / pyAudioAnalysis on the subset (per audio second): "
        f"{ref_sub.wall_s / ser_sub.wall_s:.1f}x wall, {ref_sub.cpu_s / ser_sub.cpu_s:.1f}x CPU"
    )
    if args.check:
        print("max relative error per group (over the subset's files):")
        for name, cols in GROUPS.items():
            worst = cols.start + int(errors[cols].argmax())
            print(f"  {name:<20} {errors[cols].max():.2e}  (worst: {FEATURE_NAMES[worst]})")
    print(f"load average after: {load_average()}")
    return 0


def bench_parallel(paths: list[Path], features: str) -> int:
    """Corpus extraction (preprocess=default, features=FEATURES, empty cache) with n_jobs=1,
    then with every core; wall and CPU time of this process and its workers."""
    import resource
    import tempfile

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ser.config import to_dict
    from ser.features import FeatureCache, extract_corpus
    from ser.features.extract import resolve_jobs
    from ser.project import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"features={features}", "preprocess=default"])
    preprocessor = instantiate(cfg.preprocess)
    extractor = instantiate(cfg.features.extractor)
    extractor_config = to_dict(cfg.features.extractor)
    audio_s = sum(sf.info(p).duration for p in paths)
    cores = resolve_jobs(-1)
    print(f"load average before: {load_average()}")
    print(
        f"features={features} preprocess=default: {len(paths)} files, {audio_s:.1f} s audio, "
        f"{cores} cores, each run into an empty cache (worker start-up included)"
    )

    def used() -> float:
        """CPU seconds of this process and its exited children."""
        own, kids = (
            resource.getrusage(r) for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    walls = {}
    for n_jobs in (1, cores):
        with tempfile.TemporaryDirectory() as cache_dir:
            wall, cpu = time.perf_counter(), used()
            result = extract_corpus(
                [str(p) for p in paths],
                preprocessor,
                extractor,
                extractor_config,
                FeatureCache(cache_dir),
                n_jobs=n_jobs,
            )
            wall, cpu = time.perf_counter() - wall, used() - cpu
        walls[n_jobs] = wall
        done = len(paths) - len(result.skipped)
        # Workers' CPU shows in RUSAGE_CHILDREN only once they exit (loky keeps them alive).
        cpu_note = f"{cpu:8.1f} s CPU" if n_jobs == 1 else "  (CPU in workers)"
        print(
            f"n_jobs={n_jobs:<3d} {done:5d} files {wall:8.1f} s wall {cpu_note}  "
            f"{done / wall:6.1f} files/s  RTF {wall / audio_s:.2e}"
        )
    print(f"speed-up with {cores} processes: {walls[1] / walls[cores]:.2f}x wall")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

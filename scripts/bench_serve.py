"""Throughput and latency of ser-serve: the real server on 127.0.0.1, N POST /predict of a
3-second file from C concurrent clients, for each C.

    python scripts/bench_serve.py [--model REF] [--requests 200] [--concurrency 1 8 32]

The file is a RAVDESS utterance cut to 3 s (../shared/data/ravdess) if present, else a
synthetic one. Without --model, a small model is trained first (3 epochs on the synthetic
corpus, a few minutes). Clients and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess"
CLIP_S = 3.0


def make_clip(directory: Path) -> tuple[Path, str]:
    """A 3-second file to send, and where it came from."""
    path = directory / "clip.wav"
    files = sorted(RAVDESS.rglob("*.wav")) + sorted(RAVDESS.rglob("*.flac"))
    source = next((f for f in files if sf.info(f).duration >= CLIP_S), None)
    if source is not None:
        data, rate = sf.read(source, dtype="float32")
        sf.write(path, data[: int(CLIP_S * rate)], rate)
        return path, f"RAVDESS {source.name} cut to {CLIP_S:g} s ({rate} Hz)"
    from ser.data.voice import synthesize_utterance

    wave = synthesize_utterance(0, "angry", 0, min_duration=CLIP_S, max_duration=CLIP_S)
    sf.write(path, wave, 16000)
    return path, f"synthetic utterance, {len(wave) / 16000:.2f} s (16000 Hz)"


def train_model(directory: Path) -> Path:
    ckpt = directory / "model.ckpt"
    print("no --model: training a small one (3 epochs, synthetic corpus)...", flush=True)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "trainer.max_epochs=3",
            f"save_checkpoint={ckpt}",
            f"paths.root_dir={directory}",
            "callbacks.progress_bar=null",
        ],
        cwd=directory,
        env=_env(),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=1800,
    )
    return ckpt


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # a bench never logs to someone's server
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "ser.serve.http", "--model", model, "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(
            [*args, "--host", "127.0.0.1", "--timeout-s", "120"],
            cwd=REPO,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("server did not answer /health within 180 s")


def run_load(base: str, data: bytes, requests: int, concurrency: int, budget_s: float) -> dict:
    """`requests` POSTs from `concurrency` threads; stops sending once `budget_s` has passed."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=base, timeout=120, limits=limits) as http:

        def one(i: int) -> None:
            nonlocal errors
            if time.monotonic() > deadline:
                with lock:
                    errors += 1
                return
            start = time.perf_counter()
            try:
                ok = http.post("/predict", files={"file": (f"{i}.wav", data, "audio/wav")})
                ok = ok.status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "errors": errors,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="checkpoint, MLflow run id or models:/<name>@<alias>")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--budget-s", type=float, default=300, help="time limit per level")
    args = parser.parse_args()
    if args.requests < 1 or min(args.concurrency) < 1 or max(args.concurrency) > 64:
        parser.error("--requests must be >= 1 and each --concurrency in 1..64")
    with tempfile.TemporaryDirectory(prefix="ser-bench-serve-") as tmp:
        tmp_dir = Path(tmp)
        model = args.model or str(train_model(tmp_dir))
        clip, origin = make_clip(tmp_dir)
        data = clip.read_bytes()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(model, port, tmp_dir / "server.log")
        try:
            for i in range(3):  # warm-up: first-call allocations, lazy imports
                httpx.post(f"{base}/predict", files={"file": (f"w{i}.wav", data)}, timeout=120)
            print(f"cpu cores: {os.cpu_count()} (clients and server share them)")
            print(f"file: {origin}, {len(data) / 1024:.0f} KiB; model: {model}")
            print(f"{args.requests} requests per level; server: 1 inference thread\n")
            print(
                f"{'concurrency':>11} {'requests':>8} {'req/s':>7} {'p50 ms':>8} "
                f"{'p95 ms':>8} {'errors':>6} {'wall s':>7}"
            )
            for c in args.concurrency:
                r = run_load(base, data, args.requests, c, args.budget_s)
                print(
                    f"{c:>11} {args.requests:>8} {r['rps']:7.1f} {r['p50']:8.0f} "
                    f"{r['p95']:8.0f} {r['errors']:>6} {r['wall']:7.1f}",
                    flush=True,
                )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Inference speed on one CPU core: PyTorch eager vs TorchScript vs ONNX Runtime.

    python scripts/bench_inference.py [--model REF] [--audio DIR] [--files 20] [--repeats 3]

For 3-second files (the first 3 s of RAVDESS recordings from --audio, default
../shared/data/ravdess, else generated utterances) it prints, per backend, the latency of the
model alone (preprocessed waveform -> posteriors) and of a whole file prediction (decode,
preprocess, model) as p50/p95, the files per second and the real-time factor (compute seconds
/ audio seconds), each on one thread. Without --model it first trains a small model on the
synthetic corpus (`python train.py trainer.max_epochs=3`) in a temporary directory.
"""

from __future__ import annotations

import os

# One core for everything, numpy/BLAS included (set before numpy is imported).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECONDS = 3.0


def train_small_model(root: Path) -> Path:
    ckpt = root / "model.ckpt"
    env = {**os.environ, "SER_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "train.py"), "trainer.max_epochs=3", f"save_checkpoint={ckpt}",
         "callbacks.progress_bar=null"],
        cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"trained a small model on the synthetic corpus in {time.perf_counter() - start:.0f} s")
    return ckpt


def clips(audio_dir: Path | None, n: int, out: Path) -> tuple[list[Path], str]:
    """n files of exactly 3 s: the first 3 s of recordings under audio_dir, else generated."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if audio_dir is not None and audio_dir.is_dir():
        from ser.serve.predict import AUDIO_EXTENSIONS

        found = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        for path in found[:: max(1, len(found) // n)]:  # spread over speakers
            data, rate = sf.read(path, dtype="float32")
            if len(data) < SECONDS * rate:
                continue
            target = out / f"{len(files):03d}_{path.stem}.wav"
            sf.write(target, data[: int(SECONDS * rate)], rate, subtype="PCM_16")
            files.append(target)
            if len(files) == n:
                break
        if files:
            return files, f"first {SECONDS:g} s of {len(files)} files from {audio_dir}"
    from ser.data.voice import EMOTIONS, synthesize_utterance

    for i in range(n):
        wave = synthesize_utterance(
            i % 8, EMOTIONS[i % 4], i, 16000, min_duration=SECONDS, max_duration=SECONDS
        )
        target = out / f"{i:03d}_synthetic.wav"
        sf.write(target, wave, 16000, subtype="PCM_16")
        files.append(target)
    return files, f"{n} generated {SECONDS:g} s utterances (no RAVDESS at {audio_dir})"


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="checkpoint, MLflow run id or models:/ ref")
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from ser.inference.recognizer import load_recognizer
    from ser.preprocess import read_audio
    from ser.serve.export import export, onnx_session

    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        root = Path(tmp)
        model_ref = args.model or str(train_small_model(root))
        model_label = args.model or "cnn_lstm/logmel, 3 epochs on the synthetic corpus (default)"
        recognizer = load_recognizer(model_ref)
        info = export(recognizer, root / "export", ["torchscript", "onnx"], model_ref)
        assert info["files"]["onnx"]["input"] == "waveform"
        scripted = torch.jit.load(str(root / "export" / "model.torchscript.pt"))
        session = onnx_session(root / "export" / "model.onnx", threads=1)
        files, source = clips(args.audio, args.files, root / "clips")

        def eager(wave: np.ndarray) -> np.ndarray:
            return recognizer.posteriors(wave)

        def torchscript(wave: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return scripted(torch.from_numpy(wave)[None]).numpy()[0]

        def onnxruntime(wave: np.ndarray) -> np.ndarray:
            return session.run(None, {"waveform": wave[None]})[0][0]

        backends: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "pytorch eager": eager,
            "torchscript": torchscript,
            "onnxruntime": onnxruntime,
        }
        warm = recognizer.preprocessor.process(*read_audio(files[0]))
        for run in backends.values():
            for _ in range(3):
                run(warm)
        model_s: dict[str, list[float]] = {name: [] for name in backends}
        file_s: dict[str, list[float]] = {name: [] for name in backends}
        names = list(backends)
        for repeat in range(args.repeats):
            for i, path in enumerate(files):
                # Rotate the order so that no backend always runs first (caches, CPU clock).
                shift = (repeat + i) % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    data, rate = read_audio(path)
                    wave = recognizer.preprocessor.process(data, rate, path)
                    mid = time.perf_counter()
                    backends[name](wave)
                    end = time.perf_counter()
                    model_s[name].append(end - mid)
                    file_s[name].append(end - start)

        # Streaming as ser-stream does it: a 1 s window every 0.25 s over the whole file.
        from ser.serve.stream import stream_timeline, timeline_wave

        stream_s = 0.0
        for path in files:
            data, rate = read_audio(path)
            start = time.perf_counter()
            stream_timeline(recognizer, timeline_wave(recognizer, data, rate, str(path)), 1.0, 0.25)
            stream_s += time.perf_counter() - start

    audio_s = SECONDS * len(files) * args.repeats
    print(
        f"model {model_label}\naudio {source}, {args.repeats} passes each\n"
        f"cpu {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"1 thread each (torch.set_num_threads(1), onnxruntime intra_op_num_threads=1)"
    )
    print(
        f"{'backend':<14} {'model p50':>9} {'model p95':>9} {'file p50':>9} {'file p95':>9} "
        f"{'files/s':>8} {'RTF':>7}"
    )
    for name in names:
        total = sum(file_s[name])
        print(
            f"{name:<14} {percentile_ms(model_s[name], 50):7.1f}ms "
            f"{percentile_ms(model_s[name], 95):7.1f}ms {percentile_ms(file_s[name], 50):7.1f}ms "
            f"{percentile_ms(file_s[name], 95):7.1f}ms {len(file_s[name]) / total:8.1f} "
            f"{total / audio_s:7.4f}"
        )
    print(
        f"streaming (ser-stream: 1 s window, 0.25 s hop, pytorch eager): "
        f"RTF {stream_s / (SECONDS * len(files)):.4f}"
    )
    print(
        "model = preprocessed waveform -> posteriors; file = decode + preprocess (resample, "
        "trim, normalise) + model; RTF = file compute s / audio s"
    )


if __name__ == "__main__":
    main()

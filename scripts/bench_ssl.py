"""Pretrained speech encoders (features=ssl): extraction speed and memory, and for a user with
real weights the 6-fold RAVDESS UAR of the frozen-features recipe and of fine-tuning.

    python scripts/bench_ssl.py                          # a generated wav2vec2-base-sized model
    python scripts/bench_ssl.py --family whisper --size tiny
    python scripts/bench_ssl.py --model DIR --uar        # real weights: also the UAR runs

Throughput: the real-time factor (compute seconds / audio seconds) of `SSLFeatures` on --files
recordings (RAVDESS under --audio if present, else generated speech), on 1 thread and on all
cores, one file per encoder call and in batches (as corpus extraction runs), and of the causal
variant for Emo-RL streams (`block_s`, not for Whisper); each in a fresh process whose peak
resident memory is reported. A generated model has
the architecture of the real one (base: 12 layers of 768), so its speed is the real model's;
its random weights make its features meaningless, hence no UAR without --model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess"
SIZES = {
    # hidden size, layers, heads, feed-forward: the published base models, and a tiny one.
    "base": (768, 12, 12, 3072),
    "tiny": (32, 2, 2, 64),
}


def generate(family: str, size: str, folder: Path, norm: str = "group") -> Path:
    """A randomly initialised model with the family's real architecture at `size`; `norm`
    "layer" gives the large models' per-frame layer-norm front-end (padded batches masked)."""
    import transformers as tf

    width, layers, heads, ffn = SIZES[size]
    if family == "whisper":
        config = tf.WhisperConfig(
            d_model=width,
            encoder_layers=layers,
            decoder_layers=1,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn,
            num_mel_bins=80,
        )
        tf.WhisperModel(config).save_pretrained(folder)
        tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return folder
    config_class, model_class = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
    }[family]
    config = config_class(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        num_conv_pos_embedding_groups=min(16, heads),
        **({"feat_extract_norm": "layer", "do_stable_layer_norm": True} if norm == "layer" else {}),
    )
    model_class(config).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(folder)
    return folder


def audio(files: int, audio_dir: Path) -> tuple[list, str]:
    import numpy as np

    from ser.preprocess import Preprocessor

    preprocessor = Preprocessor(sample_rate=16000)
    found = sorted(audio_dir.rglob("*.flac")) if audio_dir.is_dir() else []
    if found:
        picked = found[:: max(1, len(found) // files)][:files]
        return [preprocessor.load(p) for p in picked], f"{len(picked)} RAVDESS files"
    from ser.data.voice import synthesize_utterance

    rng = np.random.default_rng(0)
    waves = [
        synthesize_utterance(i % 8, "happy", i, 16000, min_duration=3.0, max_duration=3.0)
        for i in rng.permutation(files)
    ]
    return waves, f"{files} generated 3-s utterances"


def resident_mib() -> float:
    """This process's resident memory now (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(
    model: str, threads: int, batch: int, block_s: float | None, files: int, audio_dir: Path
) -> None:
    """One measurement in this process: prints a JSON line."""
    import torch

    torch.set_num_threads(threads)
    from ser.features.ssl import SSLFeatures

    waves, source = audio(files, audio_dir)
    before = resident_mib()
    extractor = SSLFeatures(model, output="frames", batch_size=batch, block_s=block_s)
    loaded = resident_mib()
    extractor.extract_batch(waves[:1])  # warm-up
    start = time.perf_counter()
    for first in range(0, len(waves), 4 * batch):  # as extract_corpus hands them over
        extractor.extract_batch(waves[first : first + 4 * batch])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    heard = sum(len(w) for w in waves) / 16000
    print(
        json.dumps(
            {
                "threads": threads,
                "batch": batch,
                "rtf": seconds / heard,
                "files_per_s": len(waves) / seconds,
                "model_mib": loaded - before,
                "peak_mib": peak / 1024,
                "source": source,
            }
        )
    )


def uar_runs(model: str, root: Path) -> None:
    """The 6-fold speaker-independent RAVDESS UAR of frozen pooled features + MLP, and of
    fine-tuning, through the real CLI (slow: hours on a CPU for a base model)."""
    recipes = {
        "frozen, pooled + mlp": [
            "features=ssl",
            f"features.extractor.model={model}",
            "features.extractor.output=pooled",
            "model=mlp",
            "model.net.stats=[mean]",
        ],
        "fine-tuned": ["model=ssl_finetune", "features=waveform", f"model.net.model={model}"],
    }
    env = {**os.environ, "SER_ROOT": str(root), "RAVDESS_ROOT": str(RAVDESS)}
    env.pop("MLFLOW_TRACKING_URI", None)
    for name, overrides in recipes.items():
        args = [sys.executable, str(REPO / "train.py"), "dataset=ravdess", "protocol=kfold_speaker"]
        result = subprocess.run(
            [*args, *overrides, "callbacks.progress_bar=null"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        summary = [line for line in result.stdout.splitlines() if "test/uar=" in line]
        print(f"{name}: {summary[-1] if summary else result.stdout[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a save_pretrained folder (default: generate one)")
    parser.add_argument(
        "--family", default="wav2vec2", choices=["wav2vec2", "hubert", "wavlm", "whisper"]
    )
    parser.add_argument("--size", default="base", choices=list(SIZES))
    parser.add_argument(
        "--norm", default="group", choices=["group", "layer"], help="conv front-end's norm"
    )
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="batch size to compare with 1")
    parser.add_argument("--block-s", type=float, help="the causal variant's block (default 0.24 s)")
    parser.add_argument("--audio", type=Path, default=RAVDESS)
    parser.add_argument("--uar", action="store_true", help="also the 6-fold RAVDESS UAR runs")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.model, args.child, args.batch, args.block_s, args.files, args.audio)
        return
    with tempfile.TemporaryDirectory(prefix="ser-bench-ssl-") as tmp:
        folder = Path(tmp) / "model"
        model = args.model or str(generate(args.family, args.size, folder, args.norm))
        label = args.model or (
            f"generated {args.family} ({args.size}, {args.norm}-norm front-end, random weights)"
        )
        print(f"model: {label}")
        cores = os.cpu_count() or 1
        runs = [(t, b, None) for t in sorted({1, cores}) for b in sorted({1, args.batch})]
        if args.family != "whisper" or args.model:
            runs.append((cores, args.batch, args.block_s or 0.24))
        rtf = {}
        for threads, batch, block in runs:
            command = [sys.executable, __file__, "--child", str(threads), "--model", model,
                       "--batch", str(batch), "--files", str(args.files),
                       "--audio", str(args.audio)]  # fmt: skip
            if block is not None:
                command += ["--block-s", str(block)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{threads} thread(s), batch {batch}: {done.stderr.strip()[-300:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rtf[threads, batch, block] = row["rtf"]
            how = f"causal blocks of {block} s" if block else f"batch {batch}"
            single = rtf.get((threads, 1, None)) if block is None and batch > 1 else None
            print(
                f"{threads:>2} thread(s), {how:>24}: RTF {row['rtf']:.3f}"
                + (f" ({single / row['rtf']:.2f}x faster than batch 1)" if single else "")
                + f"  {row['files_per_s']:.2f} files/s  model +{row['model_mib']:.0f} MiB"
                f"  peak {row['peak_mib']:.0f} MiB  ({row['source']})"
            )
        if args.uar:
            if not args.model:
                print("--uar needs --model DIR with real weights (random weights score chance)")
            elif not RAVDESS.is_dir():
                print(f"--uar needs RAVDESS at {RAVDESS}")
            else:
                uar_runs(model, Path(tmp))


if __name__ == "__main__":
    main()

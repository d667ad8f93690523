"""Streaming a causal classifier over utterances, chunk by chunk, once: the posteriors and
hidden summaries after every chunk, so that RL episodes are cheap replays and a deployed policy
sees exactly what it was trained on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch

from ser.errors import AudioError, SerError
from ser.inference.recognizer import Recognizer
from ser.models.nets.causal import running_mean


class _CausalNet(Protocol):
    """What streaming uses of a causal net (ser.models.nets.causal): per-frame outputs."""

    def frame_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]: ...


@dataclass
class UtteranceStream:
    """One utterance as heard chunk by chunk: row k is the state after k + 1 chunks."""

    posteriors: np.ndarray  # (K, C)
    hidden: np.ndarray  # (K, H), the LSTM output at the end of each chunk
    label: int
    duration_s: float  # of the preprocessed (silence-trimmed) speech
    chunk_s: float  # the real chunk length: whole feature frames, so rl.chunk_s rounded
    source: str = ""

    @property
    def chunks(self) -> int:
        return len(self.posteriors)

    def seconds_heard(self, chunks: int | np.ndarray) -> np.ndarray:
        return np.minimum(np.asarray(chunks) * self.chunk_s, self.duration_s)

    def fraction_heard(self, chunks: int | np.ndarray) -> np.ndarray:
        return self.seconds_heard(chunks) / self.duration_s


def check_streaming(recognizer: Recognizer, features: dict | None = None) -> None:
    """A causal model, trained with the feature config in use (when one is given)."""
    if not getattr(recognizer.module.net, "causal", False):
        raise SerError(
            f"{recognizer.source} is not a causal model; train a streaming classifier with "
            "`python train.py model=cnn_lstm model.causal=true`"
        )
    if not getattr(recognizer.extractor, "causal", True):
        raise SerError(
            f"{recognizer.source}'s features see audio after each frame (a speech encoder "
            "attends over whole chunks); train on its causal variant, "
            "features.extractor.block_s=<rl.chunk_s>, or on features=logmel"
        )
    trained = recognizer.config["features"]["extractor"]
    if features is not None and dict(features) != dict(trained):
        raise SerError(
            f"{recognizer.source} was trained with features {_describe(trained)} but this run "
            f"uses {_describe(features)}; pick the matching features= option or retrain"
        )


def _describe(extractor: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in extractor.items() if k != "_target_")
    return f"{str(extractor.get('_target_')).rsplit('.', 1)[-1]}({settings})"


def check_chunk_s(chunk_s: float) -> None:
    """A chunk must last longer than nothing."""
    if not chunk_s > 0:
        raise SerError(f"rl.chunk_s={chunk_s} must be > 0 seconds, e.g. rl.chunk_s=0.25")


def stream_wave(
    recognizer: Recognizer, wave: np.ndarray, chunk_s: float, label: int = -1, source: str = ""
) -> UtteranceStream:
    """Posteriors after every `chunk_s` of a preprocessed waveform.

    The causal net runs once over the whole utterance; each chunk's posterior is the running
    mean of per-frame logits up to the chunk's end, exactly what `net.stream` gives chunk by
    chunk (tested), so nothing after a chunk influences its posterior. A chunk is a whole
    number of feature frames (at least one): the stream records that real length, which is
    what time heard is counted in.
    """
    check_chunk_s(chunk_s)
    rate = recognizer.sample_rate
    duration = len(wave) / rate
    if duration < chunk_s:
        raise AudioError(
            source or "<array>",
            f"shorter than one chunk ({duration:.3f} s < rl.chunk_s={chunk_s} s); "
            "lower rl.chunk_s or drop the utterance",
        )
    hop = getattr(recognizer.extractor, "hop_length", None)
    if not hop:
        raise SerError("streaming needs frame-level features with a hop_length (logmel, mfcc)")
    feats = recognizer.features(wave)
    module = recognizer.module
    x = ((feats - module.feature_mean) / module.feature_std).unsqueeze(0)
    with torch.no_grad():
        logits, hidden, _ = cast(_CausalNet, module.net).frame_outputs(x)
    frames = logits.shape[1]
    chunk_frames = max(1, round(chunk_s * rate / hop))
    block = getattr(recognizer.extractor, "block_frames", None)
    if block and chunk_frames % block:
        raise SerError(
            f"rl.chunk_s={chunk_s} is not a whole number of the features' causal blocks "
            f"({block * hop / rate:g} s, features.extractor.block_s): a chunk would end inside "
            "a block that has heard audio after it; set rl.chunk_s to a multiple of block_s"
        )
    chunks = math.ceil(frames / chunk_frames)
    ends = np.minimum(np.arange(1, chunks + 1) * chunk_frames, frames) - 1
    posteriors = torch.softmax(running_mean(logits)[0, ends], dim=-1).numpy()
    return UtteranceStream(
        posteriors=posteriors.astype(np.float32),
        hidden=hidden[0, ends].numpy().astype(np.float32),
        label=label,
        duration_s=duration,
        chunk_s=chunk_frames * hop / rate,
        source=source,
    )


def stream_files(
    recognizer: Recognizer, paths: Sequence[str], labels: Sequence[int], chunk_s: float
) -> tuple[list[UtteranceStream], dict[str, str]]:
    """Streams of files; unusable or too-short files are skipped with their reason."""
    from tqdm.auto import tqdm

    streams, skipped = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-utterance work: one thread is fastest
    try:
        for path, label in tqdm(list(zip(paths, labels, strict=True)), desc="stream", unit="file"):
            try:
                wave = recognizer.preprocessor.load(path)
                streams.append(stream_wave(recognizer, wave, chunk_s, int(label), str(path)))
            except AudioError as err:
                skipped[str(path)] = err.reason
    finally:
        torch.set_num_threads(threads)
    return streams, skipped

"""Pretrained self-supervised speech encoders as features: wav2vec 2.0, HuBERT, WavLM (any
model `transformers.AutoModel` loads with a wav2vec2-style feature extractor) and the Whisper
encoder.

`model` is a local directory (`save_pretrained` output, or `hf download NAME
--local-dir DIR`) or a hub id already in the local Hugging Face cache. The model's own input
normalisation is applied (its feature extractor's `do_normalize`, Whisper's log-mel front-end),
audio runs through the encoder in chunks (a long file never needs the whole attention matrix),
in inference mode, and the output is one of

* ``frames``: one layer's hidden states, (frames, dim) at the encoder's frame rate (20 ms),
  for the CNN / LSTM / CNN-LSTM nets and streaming;
* ``pooled``: the mean (and std) over frames of one or several layers, one row per
  utterance, for the MLP and the classical models;
* ``layers``: every layer's mean over frames, (layers, dim) per utterance, for a net that learns
  a weighted sum of layers (the SUPERB recipe), extracted and cached once.

The feature cache is keyed by the model's identity (its config and a hash of its weights), not
by its name, so another checkpoint under the same name is extracted afresh.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ser.errors import SerError

OUTPUTS = ("frames", "pooled", "layers")
POOLING = ("mean", "std")
# The wav2vec 2.0 family and the Whisper encoder both produce one frame per 320 samples
# (20 ms at 16 kHz): the product of the conv strides, or Whisper's hop of 160 and stride 2.
WHISPER_FRAME_SAMPLES = 2 * 160
WHISPER_CHUNK_S = 30.0


def is_whisper(processor: Any) -> bool:
    """Whether a loaded feature extractor is Whisper's (log-mel input, 30-s windows)."""
    return "whisper" in type(processor).__name__.lower()


def _offline_hint(model: str) -> str:
    return (
        f"get the weights with `hf download {model} --local-dir DIR`, then set "
        "features.extractor.model=DIR"
    )


def load_pretrained(model: str, download: bool = False) -> tuple[Any, Any]:
    """The encoder and its feature extractor from a local directory, or for a hub id from the
    local Hugging Face cache; from the hub itself only with `download`, so that a machine
    without network gets one clear line instead of a wait for connection timeouts."""
    from transformers import AutoFeatureExtractor, AutoModel

    local = Path(model).expanduser()
    if model.startswith((".", "/", "~")) and not local.is_dir():
        raise SerError(f"features.extractor.model={model}: no such directory; check the path")
    source = str(local) if local.is_dir() else model
    try:
        encoder = AutoModel.from_pretrained(source, local_files_only=not download)
        extractor = AutoFeatureExtractor.from_pretrained(source, local_files_only=not download)
    except (OSError, ValueError) as err:
        where = "the directory" if local.is_dir() else "no local directory or cached copy"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SerError(
            f"cannot load the speech encoder {model!r} ({where}: {first[:160]}); "
            f"{_offline_hint(model)}"
            + (
                ""
                if download
                else " (or features.extractor.download=true where the hub is reachable)"
            )
        ) from None
    if is_whisper(extractor):
        encoder = encoder.get_encoder()  # the encoder of the encoder-decoder model
    return encoder.eval(), extractor


class SSLFeatures(nn.Module):
    """A pretrained encoder's hidden states as features: (samples,) -> (frames or rows, dim)."""

    encoder: Any  # a transformers PreTrainedModel (its attributes are untyped for mypy)

    def __init__(
        self,
        model: str,
        sample_rate: int = 16000,
        output: str = "frames",
        layer: int = -1,
        layers: Sequence[int] | None = None,
        pooling: Sequence[str] = ("mean", "std"),
        chunk_s: float = 20.0,
        device: str = "auto",
        download: bool = False,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise SerError(f"features.extractor.output={output!r}: choose one of {OUTPUTS}")
        bad = [p for p in pooling if p not in POOLING]
        if bad or not pooling:
            raise SerError(f"features.extractor.pooling={list(pooling)}: choose from {POOLING}")
        if not chunk_s > 0:
            raise SerError(f"features.extractor.chunk_s={chunk_s} must be > 0 seconds")
        self.encoder, self.processor = load_pretrained(str(model), download)
        rate = int(getattr(self.processor, "sampling_rate", sample_rate))
        if rate != sample_rate:
            raise SerError(
                f"{model} takes audio at {rate} Hz but preprocess.sample_rate={sample_rate}; "
                f"set preprocess.sample_rate={rate}"
            )
        self.sample_rate = sample_rate
        self.whisper = is_whisper(self.processor)
        self.encoder_hop = WHISPER_FRAME_SAMPLES if self.whisper else _conv_hop(self.encoder)
        chunk = min(chunk_s, WHISPER_CHUNK_S) if self.whisper else chunk_s
        # Whole encoder frames per chunk, so chunked outputs line up with the unchunked ones.
        self.chunk_samples = max(1, int(chunk * sample_rate) // self.encoder_hop) * (
            self.encoder_hop
        )
        self.output = output
        n_states = int(self.encoder.config.num_hidden_layers) + 1  # the input embeddings too
        chosen = [layer] if layers is None else list(layers)
        self.layers = [_layer_index(i, n_states) for i in chosen]
        self.pooling = list(pooling)
        width = int(self.encoder.config.hidden_size)
        self.dim = width * len(self.layers) * len(self.pooling) if output == "pooled" else width
        if output == "frames":
            self.hop_length = self.encoder_hop  # frame-level: windows, crops, streaming
        if device == "auto":  # the GPU where there is one, as trainer.accelerator=auto does
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder.to(device)
        self.device = torch.device(device)
        self._identity: str | None = None

    def identity(self) -> dict[str, str]:
        """The model's identity for the feature cache: its config and its weights' hash."""
        if self._identity is None:
            digest = hashlib.sha256(self.encoder.config.to_json_string().encode())
            for name, tensor in sorted(self.encoder.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._identity = digest.hexdigest()
        return {"model_identity": self._identity}

    def _inputs(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's own front-end on one chunk: normalisation, or Whisper's log-mel."""
        if self.whisper:
            features = self.processor(chunk, sampling_rate=self.sample_rate, return_tensors="pt")
            return {"input_features": features["input_features"].to(self.device)}
        values = self.processor(chunk, sampling_rate=self.sample_rate, return_tensors="pt")
        return {"input_values": values["input_values"].to(self.device)}

    def hidden_states(self, wave: np.ndarray) -> torch.Tensor:
        """Every layer's hidden states of one waveform, (layers + 1, frames, dim), chunk by
        chunk; Whisper's padded 30-s window is cut back to the frames the audio covers."""
        states = []
        starts = list(range(0, max(len(wave), 1), self.chunk_samples))
        if len(starts) > 1 and len(wave) - starts[-1] < self.sample_rate:
            starts.pop()  # a tail under 1 s joins the chunk before (too short for the convs)
        for start, end in zip(starts, [*starts[1:], len(wave)], strict=True):
            chunk = wave[start:end]
            with torch.inference_mode():
                out = self.encoder(**self._inputs(chunk), output_hidden_states=True)
            stacked = torch.stack(out.hidden_states)[:, 0]  # (layers + 1, frames, dim)
            if self.whisper:
                stacked = stacked[:, : math.ceil(len(chunk) / self.encoder_hop)]
            states.append(stacked.float().cpu())
        return torch.cat(states, dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        samples = wave.detach().cpu().numpy().astype(np.float32, copy=False)
        if samples.ndim != 1:
            return torch.stack([self.forward(torch.from_numpy(w)) for w in samples])
        states = self.hidden_states(samples)
        if self.output == "frames":
            return states[self.layers[0]]
        if self.output == "layers":
            return states.mean(dim=1)  # (layers + 1, dim)
        picked = states[self.layers]  # (chosen, frames, dim)
        parts = [
            picked.mean(dim=1) if p == "mean" else picked.std(dim=1, correction=0)
            for p in self.pooling
        ]
        return torch.cat([part.reshape(-1) for part in parts]).unsqueeze(0)  # one row


def _conv_hop(encoder: Any) -> int:
    """Samples per output frame of a wav2vec2-style encoder: the product of its conv strides."""
    strides = getattr(encoder.config, "conv_stride", None)
    if not strides:
        raise SerError(
            f"{type(encoder).__name__} is not a wav2vec2-style or Whisper encoder; "
            "features=ssl takes wav2vec 2.0, HuBERT, WavLM or Whisper models"
        )
    return int(np.prod(strides))


def _layer_index(index: int, n_states: int) -> int:
    """A layer number (0 = the input embeddings, -1 = the last layer) checked against the model."""
    if not -n_states <= index < n_states:
        raise SerError(
            f"features.extractor.layer {index} is out of range: the model has {n_states} hidden "
            f"states (0 = embeddings .. {n_states - 1}, or -1 for the last)"
        )
    return index % n_states


class Waveform(nn.Module):
    """The preprocessed waveform itself, (samples, 1): the input of a net that holds its own
    front-end, such as a fine-tuned speech encoder (model=ssl_finetune)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = 1
        self.dim = 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave.float().unsqueeze(-1)

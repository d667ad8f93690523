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

Corpus extraction is batched (`batch_size` chunks per encoder call, sorted by length): padded
where padding is masked exactly (Whisper's fixed windows, a layer-norm front-end with an
attention mask), else only chunks of one length share a call, so batched features equal the
one-at-a-time ones.

The encoders attend over a whole chunk, so a frame sees audio after it. With `block_s` the
frames are encoded block by block (each block with `context_s` of audio before it and nothing
after it): a causal variant for Emo-RL streams. Whisper has none: its encoder takes fixed
30-s windows, so every block would cost a full 30-s pass.

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
        batch_size: int | str = "auto",
        block_s: float | None = None,
        context_s: float = 2.0,
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
        if block_s is not None and not (block_s > 0 and output == "frames" and context_s >= 0):
            raise SerError(
                f"features.extractor.block_s={block_s} (context_s={context_s}) streams frames: "
                "set output=frames, block_s > 0 and context_s >= 0"
            )
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
        if device == "auto":  # the GPU where there is one, as trainer.accelerator=auto does
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if batch_size == "auto":
            # Measured on a 2-core CPU (scripts/bench_ssl.py): batches of 8 were no faster
            # than one chunk a call (0.99x, padded 0.82-1.01x) and took more memory; a GPU is
            # where batches pay.
            batch_size = 8 if device.startswith("cuda") else 1
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SerError(
                f"features.extractor.batch_size={batch_size} must be a whole number >= 1 or auto"
            )
        self.batch_size = batch_size
        # Padded batches equal one-at-a-time outputs only where the padding is masked all the
        # way: Whisper (every input is a padded 30-s window anyway) and a per-frame layer-norm
        # front-end; a group-norm one (wav2vec2-base, hubert-base) normalises over time,
        # padding included, so there only chunks of one length share a batch.
        self.pads_exactly = (
            self.whisper or getattr(self.encoder.config, "feat_extract_norm", "") == "layer"
        )
        self.block_frames: int | None = None
        if block_s is not None:
            if self.whisper:
                raise SerError(
                    f"{model}: Whisper's encoder has no causal variant (it takes fixed 30-s "
                    "windows, so every block would cost a full 30-s pass); stream with wav2vec "
                    "2.0, HuBERT or WavLM and block_s, or with features=logmel"
                )
            self.block_frames = max(1, round(block_s * sample_rate / self.encoder_hop))
            self.context_samples = round(context_s * sample_rate / self.encoder_hop) * (
                self.encoder_hop
            )
            self.receptive_field = _receptive_field(self.encoder, self.encoder_hop)
        self.causal = self.block_frames is not None
        self.output = output
        n_states = int(self.encoder.config.num_hidden_layers) + 1  # the input embeddings too
        chosen = [layer] if layers is None else list(layers)
        self.layers = [_layer_index(i, n_states) for i in chosen]
        self.pooling = list(pooling)
        width = int(self.encoder.config.hidden_size)
        self.dim = width * len(self.layers) * len(self.pooling) if output == "pooled" else width
        if output == "frames":
            self.hop_length = self.encoder_hop  # frame-level: windows, crops, streaming
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

    def frames_of(self, samples: int) -> int:
        """Output frames of `samples` of audio: those whose conv window fits in it, or for
        Whisper the 20-ms frames the audio covers (its padded window cut back)."""
        if self.whisper:
            return math.ceil(samples / self.encoder_hop)
        return int(self.encoder._get_feat_extract_output_lengths(samples))

    def _pieces(self, samples: int) -> list[tuple[int, int, int, int]]:
        """(start, end, first, last) of each encoder call on a waveform: its audio span and
        the range of that call's output frames the waveform keeps."""
        hop = self.encoder_hop
        if self.block_frames is None:
            starts = list(range(0, max(samples, 1), self.chunk_samples))
            if len(starts) > 1 and samples - starts[-1] < self.sample_rate:
                starts.pop()  # a tail under 1 s joins the chunk before (too short for the convs)
            ends = [*starts[1:], samples]
            return [(s, e, 0, self.frames_of(e - s)) for s, e in zip(starts, ends, strict=True)]
        # Causal blocks: global frames [a, b) from the audio up to the end of frame b - 1's
        # window, with context before it; a call starting at a whole frame shifts its frames.
        pieces = []
        total = self.frames_of(samples)
        for a in range(0, total, self.block_frames):
            b = min(a + self.block_frames, total)
            start = max(0, a * hop - self.context_samples)
            end = (b - 1) * hop + self.receptive_field
            pieces.append((start, end, a - start // hop, b - start // hop))
        return pieces

    def _encode(self, chunks: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Every layer's states of each chunk, (layers + 1, frames, dim), in one encoder call;
        each chunk gets the model's own front-end (normalisation, or Whisper's log-mel)."""
        rate = self.sample_rate
        if self.whisper:
            mels = [self.processor(c, sampling_rate=rate)["input_features"][0] for c in chunks]
            inputs = {"input_features": torch.from_numpy(np.stack(mels))}
        else:
            values = [self.processor(c, sampling_rate=rate)["input_values"][0] for c in chunks]
            lengths = [len(v) for v in values]
            padded = torch.zeros(len(values), max(lengths))
            mask = torch.zeros(len(values), max(lengths), dtype=torch.long)
            for row, (v, n) in enumerate(zip(values, lengths, strict=True)):
                padded[row, :n] = torch.as_tensor(np.asarray(v, dtype=np.float32))
                mask[row, :n] = 1
            inputs = {"input_values": padded}
            if len(set(lengths)) > 1:
                inputs["attention_mask"] = mask
        with torch.inference_mode():
            out = self.encoder(
                **{k: v.to(self.device) for k, v in inputs.items()}, output_hidden_states=True
            )
        stacked = torch.stack(out.hidden_states).float().cpu()  # (layers + 1, batch, frames, dim)
        return [stacked[:, row, : self.frames_of(len(c))] for row, c in enumerate(chunks)]

    def hidden_states_batch(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Every layer's hidden states of each waveform, (layers + 1, frames, dim): its chunks
        (or causal blocks) sorted by length and run `batch_size` at a time."""
        pieces = [(w, *p) for w, wave in enumerate(waves) for p in self._pieces(len(wave))]
        order = sorted(range(len(pieces)), key=lambda i: pieces[i][2] - pieces[i][1])
        groups: list[list[int]] = []
        for i in order:
            length = pieces[i][2] - pieces[i][1]
            last = groups[-1] if groups else None
            if (
                last is None
                or len(last) == self.batch_size
                or (not self.pads_exactly and length != pieces[last[0]][2] - pieces[last[0]][1])
            ):
                groups.append([])
            groups[-1].append(i)
        states: dict[int, torch.Tensor] = {}
        for group in groups:
            chunks = [waves[pieces[i][0]][pieces[i][1] : pieces[i][2]] for i in group]
            for i, encoded in zip(group, self._encode(chunks), strict=True):
                states[i] = encoded[:, pieces[i][3] : pieces[i][4]]
        n_states = int(self.encoder.config.num_hidden_layers) + 1
        empty = torch.zeros(n_states, 0, int(self.encoder.config.hidden_size))
        per_wave: list[list[torch.Tensor]] = [[] for _ in waves]
        for i in range(len(pieces)):  # in time order within each waveform
            per_wave[pieces[i][0]].append(states[i])
        return [torch.cat(parts, dim=1) if parts else empty for parts in per_wave]

    def hidden_states(self, wave: np.ndarray) -> torch.Tensor:
        """Every layer's hidden states of one waveform, (layers + 1, frames, dim)."""
        return self.hidden_states_batch([wave])[0]

    def _output(self, states: torch.Tensor) -> torch.Tensor:
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

    def extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of several waveforms at once (corpus extraction), float32 each."""
        samples = [np.asarray(w, dtype=np.float32) for w in waves]
        return [self._output(s).numpy() for s in self.hidden_states_batch(samples)]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        samples = wave.detach().cpu().numpy().astype(np.float32, copy=False)
        if samples.ndim != 1:
            return torch.stack([self.forward(torch.from_numpy(w)) for w in samples])
        return self._output(self.hidden_states(samples))


def _conv_hop(encoder: Any) -> int:
    """Samples per output frame of a wav2vec2-style encoder: the product of its conv strides."""
    strides = getattr(encoder.config, "conv_stride", None)
    if not strides:
        raise SerError(
            f"{type(encoder).__name__} is not a wav2vec2-style or Whisper encoder; "
            "features=ssl takes wav2vec 2.0, HuBERT, WavLM or Whisper models"
        )
    return int(np.prod(strides))


def _receptive_field(encoder: Any, hop: int) -> int:
    """Samples one output frame's conv window spans (400 for the real models)."""
    samples = 1
    while int(encoder._get_feat_extract_output_lengths(samples)) < 1:
        samples += 1
    return samples


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

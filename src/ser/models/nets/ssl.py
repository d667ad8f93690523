"""A pretrained speech encoder fine-tuned inside the one LightningModule (model=ssl_finetune):
raw waveforms in, a learned weighted sum of the encoder's layers, masked mean pooling, a head.

The recipe behind the published state-of-the-art figures: the convolutional front-end frozen,
optionally the first `freeze_layers` transformer layers too, the encoder trained at
`encoder_lr_scale` times the head's learning rate (`parameter_groups`, read by SERModule's
optimiser), gradient checkpointing and mixed precision (trainer=gpu) on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ser.errors import SerError
from ser.features.functionals import time_mask
from ser.features.ssl import WHISPER_FRAME_SAMPLES, is_whisper, load_pretrained
from ser.models.nets.layers import classifier_head


class SSLClassifier(nn.Module):
    causal = False

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        model: str,
        freeze_feature_encoder: bool = True,
        freeze_layers: int = 0,
        encoder_lr_scale: float = 0.1,
        gradient_checkpointing: bool = False,
        dropout: float = 0.1,
        download: bool = False,
    ) -> None:
        super().__init__()
        if input_dim != 1:
            raise SerError(
                f"model=ssl_finetune takes the waveform, not {input_dim}-dim features; "
                "add features=waveform"
            )
        encoder, self.processor = load_pretrained(model, download)
        self.encoder: Any = encoder.train()
        self.whisper = is_whisper(self.processor)
        # LayerDrop skips layers at random in training, and with them their hidden states:
        # the weighted sum over layers needs every one.
        for name in ("layerdrop", "encoder_layerdrop"):
            if hasattr(self.encoder.config, name):
                setattr(self.encoder.config, name, 0.0)
        if gradient_checkpointing:
            self.encoder.gradient_checkpointing_enable()
        if freeze_feature_encoder:
            for module in self.front_end():
                module.requires_grad_(False)
        for layer in self.transformer_layers()[:freeze_layers]:
            layer.requires_grad_(False)
        self.encoder_lr_scale = encoder_lr_scale
        states = int(self.encoder.config.num_hidden_layers) + 1
        self.layer_weights = nn.Parameter(torch.zeros(states))  # softmax: equal at start
        self.head = classifier_head(int(self.encoder.config.hidden_size), num_classes, dropout)

    def front_end(self) -> list[nn.Module]:
        """The convolutional front-end (frozen by default, as in the published recipes)."""
        if self.whisper:
            return [self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions]
        return [self.encoder.feature_extractor]

    def transformer_layers(self) -> list[nn.Module]:
        layers = self.encoder.layers if self.whisper else self.encoder.encoder.layers
        return list(layers)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The encoder at `encoder_lr_scale` times the learning rate, the rest at the rate."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        own = [self.layer_weights, *self.head.parameters()]
        return [{"params": encoder, "lr_scale": self.encoder_lr_scale}, {"params": own}]

    def _inputs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """The encoder's own input normalisation, and each utterance's number of output frames."""
        if self.whisper:
            numpy_waves = [
                w[:n].detach().cpu().numpy() for w, n in zip(waves, lengths, strict=True)
            ]
            rate = int(self.processor.sampling_rate)
            feats = self.processor(numpy_waves, sampling_rate=rate, return_tensors="pt")
            frames = torch.ceil(lengths / WHISPER_FRAME_SAMPLES).long()
            return {"input_features": feats["input_features"].to(waves.device)}, frames
        mask = time_mask(lengths, waves.shape[1]).to(waves.dtype)
        if getattr(self.processor, "do_normalize", False):
            count = lengths.clamp_min(1).unsqueeze(1).to(waves.dtype)
            mean = (waves * mask).sum(dim=1, keepdim=True) / count
            var = (((waves - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
            waves = (waves - mean) / torch.sqrt(var + 1e-7) * mask
        inputs: dict[str, torch.Tensor] = {"input_values": waves}
        if getattr(self.processor, "return_attention_mask", False):
            inputs["attention_mask"] = mask.long()
        # transformers' own rule for the conv front-end's output length (no public name).
        frames = self.encoder._get_feat_extract_output_lengths(lengths)
        return inputs, frames.long()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs, frames = self._inputs(x[..., 0], lengths)
        out = self.encoder(**inputs, output_hidden_states=True)
        states = torch.stack(out.hidden_states)  # (layers + 1, B, T', D)
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = (weights[:, None, None, None] * states).sum(dim=0)  # (B, T', D)
        frames = frames.clamp(1, mixed.shape[1])
        mask = time_mask(frames, mixed.shape[1]).unsqueeze(-1).to(mixed.dtype)
        pooled = (mixed * mask).sum(dim=1) / frames.unsqueeze(1).to(mixed.dtype)
        return self.head(pooled)


class WeightedLayers(nn.Module):
    """On `features=ssl features.extractor.output=layers` (each utterance: one pooled vector per
    encoder layer, (layers, dim)): a learned softmax-weighted sum of the layers, then an MLP
    (the SUPERB recipe for a frozen encoder; the layers are extracted and cached once)."""

    causal = False
    # Weights for up to this many hidden states (Whisper-large has 33); the first L are used.
    MAX_LAYERS = 64

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_sizes: list[int] | tuple[int, ...] = (256,),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(self.MAX_LAYERS))  # equal at start
        layers: list[nn.Module] = []
        size = input_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(size, hidden), nn.ReLU(), nn.Dropout(dropout)]
            size = hidden
        self.body = nn.Sequential(*layers)
        self.head = classifier_head(size, num_classes, 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.MAX_LAYERS or bool((lengths != n).any()):
            raise SerError(
                "model=ssl_layers takes features=ssl features.extractor.output=layers "
                f"(every utterance one row per layer, at most {self.MAX_LAYERS})"
            )
        weights = torch.softmax(self.layer_weights[:n], dim=0)
        return self.head(self.body((weights[None, :, None] * x).sum(dim=1)))

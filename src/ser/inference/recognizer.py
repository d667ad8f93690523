"""A trained model with its own front-end: audio in, class posteriors out.

A model is referred to by a checkpoint path (`.ckpt`), an MLflow run id (or `runs:/<id>`),
whose `checkpoints/` artifact is used, or a registered model (`models:/<name>@<alias>`). The
checkpoint carries the run's config, so the preprocessing and features are exactly those the
model was trained with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ser.errors import SerError, find_user_error
from ser.models.module import SERModule, load_checkpoint
from ser.preprocess import Preprocessor, read_audio
from ser.tracking.registry import (
    ENCODER_ARTIFACT,
    checkpoint_of_registered_model,
    checkpoint_of_run,
)

RUN_ID = re.compile(r"^(runs:/)?([0-9a-f]{32})/?$")


@dataclass
class Prediction:
    """One utterance's label, posterior per class and duration (seconds, before trimming)."""

    source: str
    label: str
    probabilities: dict[str, float]
    duration_s: float
    extras: dict = field(default_factory=dict)
    # What the user should know about the input (e.g. a sample rate below the model's).
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "label": self.label,
            "duration_s": round(self.duration_s, 3),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            **self.extras,
            **({"warnings": self.warnings} if self.warnings else {}),
        }


def low_rate_warning(rate: int, model_rate: int) -> str | None:
    """A warning for audio recorded below the model's sample rate (8 kHz telephone audio into a
    16 kHz model): upsampling cannot bring back the missing band, and predictions shift."""
    if rate >= model_rate:
        return None
    return (
        f"audio at {rate} Hz is below the model's {model_rate} Hz: upsampling cannot restore "
        f"what was never recorded, so predictions are less reliable (record at {model_rate} Hz "
        "or more)"
    )


class Recognizer:
    """A SERModule with the preprocessor and feature extractor of the run that trained it."""

    def __init__(self, module: SERModule, config: dict, source: str = "") -> None:
        self.module = module.eval()
        self.config = config
        self.source = source
        cfg = OmegaConf.create(config)
        try:
            self.preprocessor: Preprocessor = instantiate(cfg.preprocess)
            self.extractor: nn.Module = instantiate(cfg.features.extractor).eval()
        except Exception as err:  # Hydra wraps a user error (a missing encoder folder, say)
            user_error = find_user_error(err)
            if user_error is None:
                raise
            raise user_error from None
        self.class_names: list[str] = list(module.class_names)
        self.sample_rate = self.preprocessor.sample_rate
        self.feature_config = OmegaConf.to_container(cfg.features.extractor, resolve=True)

    @classmethod
    def from_checkpoint(cls, path: str | Path, encoder: str | Path | None = None) -> Recognizer:
        """`encoder`: a folder in place of the pretrained encoder the checkpoint names."""
        module, config = load_checkpoint(path, encoder=encoder)
        return cls(module, config, str(path))

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """Frame-level features (frames, dim) of a preprocessed waveform."""
        with torch.no_grad():
            return self.extractor(torch.from_numpy(np.asarray(wave, dtype=np.float32)))

    def posteriors_of_features(self, feats: torch.Tensor) -> np.ndarray:
        """Class posteriors for a batch (B, T, D) (or one (T, D)) of features."""
        single = feats.ndim == 2
        batch = feats.unsqueeze(0) if single else feats
        lengths = torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long)
        with torch.no_grad():
            probs = torch.softmax(self.module(batch, lengths), dim=-1).numpy()
        return probs[0] if single else probs

    def posteriors(self, wave: np.ndarray) -> np.ndarray:
        """Class posteriors of one preprocessed waveform."""
        return self.posteriors_of_features(self.features(wave))

    def predict_array(self, data: np.ndarray, rate: int, source: str = "<array>") -> Prediction:
        """Predict from decoded samples, (frames,) or (frames, channels), at `rate`."""
        duration = len(data) / rate
        wave = self.preprocessor.process(data, rate, source)
        probs = self.posteriors(wave)
        warning = low_rate_warning(rate, self.sample_rate)
        return Prediction(
            source=source,
            label=self.class_names[int(np.argmax(probs))],
            probabilities=dict(zip(self.class_names, map(float, probs), strict=True)),
            duration_s=duration,
            warnings=[warning] if warning else [],
        )

    def predict_file(self, path: str | Path) -> Prediction:
        data, rate = read_audio(path)
        return self.predict_array(data, rate, str(path))


def load_recognizer(ref: str | Path, tracking_uri: str | None = None) -> Recognizer:
    """A Recognizer from a checkpoint path or an MLflow run id (`<id>` or `runs:/<id>`)."""
    text = str(ref)
    match = RUN_ID.match(text)
    if match and not Path(text).exists():
        return Recognizer.from_checkpoint(checkpoint_of_run(match.group(2), tracking_uri))
    if text.startswith("models:/"):
        checkpoint = checkpoint_of_registered_model(text, tracking_uri)
        bundled = checkpoint.parent / ENCODER_ARTIFACT  # registered with its encoder's copy
        return Recognizer.from_checkpoint(checkpoint, bundled if bundled.is_dir() else None)
    path = Path(text)
    if not path.exists():
        raise SerError(
            f"model {text!r} not found: give a .ckpt path, an MLflow run id or "
            "models:/<name>@<alias>; train one with `python train.py`"
        )
    return Recognizer.from_checkpoint(path)

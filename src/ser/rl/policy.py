"""A trained Emo-RL policy applied to one utterance: when it stops listening, and its label."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import SerError
from ser.rl.env import ObservationSpec
from ser.rl.evaluate import policy_decisions
from ser.rl.streams import check_streaming, stream_wave
from ser.serve.model import Recognizer


@dataclass(frozen=True)
class Decision:
    seconds: float  # of preprocessed (silence-trimmed) speech heard
    fraction: float
    label: str


class EarlyPolicy:
    """An SB3 policy saved by `ser.rl.train` (policy_*.zip with its .json beside it)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise SerError(
                f"policy {path} (with {meta_path.name} beside it) not found; train one with "
                "`python -m ser.rl.train rl=emorl` (its run's artifacts hold policy_*.zip)"
            )
        meta = json.loads(meta_path.read_text())
        module, name = meta["algorithm"].rsplit(".", 1)
        self.model = getattr(importlib.import_module(module), name).load(path, device="cpu")
        self.chunk_s = float(meta["chunk_s"])
        self.spec = ObservationSpec(**meta["observation"])

    def decide(self, recognizer: Recognizer, wave: np.ndarray) -> Decision:
        """Replay the preprocessed `wave` chunk by chunk until the policy terminates."""
        check_streaming(recognizer)
        stream = stream_wave(recognizer, wave, self.chunk_s, source=recognizer.source)
        (heard,) = policy_decisions(
            lambda obs: self.model.predict(obs, deterministic=True)[0], [stream], self.spec
        )
        label = recognizer.class_names[int(np.argmax(stream.posteriors[heard - 1]))]
        return Decision(
            float(stream.seconds_heard(heard)), float(stream.fraction_heard(heard)), label
        )

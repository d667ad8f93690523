"""Early decisions on a stream: what a policy observes after each chunk, the chunk at which it
stops listening, and a trained Emo-RL policy applied to one utterance. Shared by the Emo-RL
environment that trains policies (`ser.rl`) and the tools that use them (`ser.serve`)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import SerError
from ser.inference.recognizer import Recognizer
from ser.inference.streaming import UtteranceStream, check_streaming, stream_wave

# The agent's actions after each chunk: hear one more chunk, or commit to the current label.
WAIT, TERMINATE = 0, 1


@dataclass(frozen=True)
class ObservationSpec:
    """The posterior, plus the extras switched on here."""

    # The posterior in descending order instead of by class: the confidence profile without
    # the class names, so a few hundred episodes cannot teach per-class stopping rules.
    sorted_posterior: bool = False
    hidden: bool = False
    elapsed: bool = True  # fraction and seconds of audio heard
    entropy: bool = True
    change: bool = True  # L1 change of the posterior since the previous chunk

    def size(self, classes: int, hidden: int) -> int:
        return (
            classes
            + (hidden if self.hidden else 0)
            + 2 * self.elapsed
            + int(self.entropy)
            + int(self.change)
        )

    def build(self, stream: UtteranceStream, heard: np.ndarray) -> np.ndarray:
        """Observations after `heard` chunks (1-based; an array for all steps at once)."""
        heard = np.asarray(heard)
        index = heard - 1
        post = stream.posteriors[index]
        parts = [-np.sort(-post, axis=-1) if self.sorted_posterior else post]
        if self.hidden:
            parts.append(stream.hidden[index])
        if self.elapsed:
            parts += [
                stream.fraction_heard(heard)[..., None],
                stream.seconds_heard(heard)[..., None],
            ]
        if self.entropy:
            parts.append(-(post * np.log(np.clip(post, 1e-12, 1.0))).sum(-1, keepdims=True))
        if self.change:
            previous = stream.posteriors[np.maximum(index - 1, 0)]
            change = np.abs(post - previous).sum(-1, keepdims=True)
            parts.append(np.where(index[..., None] > 0, change, 0.0))
        return np.concatenate(parts, axis=-1).astype(np.float32)


PolicyFn = Callable[[np.ndarray], np.ndarray]


def policy_decisions(
    policy: PolicyFn, streams: Sequence[UtteranceStream], spec: ObservationSpec
) -> np.ndarray:
    """Chunks heard when `policy` (observations -> actions, batched) terminates each stream."""
    heard = np.zeros(len(streams), dtype=int)
    active = np.arange(len(streams))
    step = 1
    while len(active):
        obs = np.stack([spec.build(streams[int(i)], np.array(step)) for i in active])
        actions = np.asarray(policy(obs)).reshape(-1)
        ends = np.array([streams[int(i)].chunks == step for i in active])
        done = (actions == TERMINATE) | ends
        heard[active[done]] = step
        active = active[~done]
        step += 1
    return heard


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

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
import torch

from ser.errors import SerError
from ser.inference.recognizer import Recognizer
from ser.inference.streaming import UtteranceStream, check_streaming, stream_wave
from ser.models.halting import HaltingPolicy

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
        stream = _stream(recognizer, wave, self.chunk_s)
        (heard,) = policy_decisions(
            lambda obs: self.model.predict(obs, deterministic=True)[0], [stream], self.spec
        )
        return _decision(recognizer, stream, int(heard))


def halting_decisions(halting: HaltingPolicy, streams: Sequence[UtteranceStream]) -> np.ndarray:
    """Chunks heard when a joint model's own stopping policy (rl=joint) stops each stream:
    it reads the LSTM state at each chunk's end, which the stream records."""
    heard = []
    for stream in streams:
        if abs(stream.chunk_s - halting.chunk_s) > 1e-9:
            raise SerError(
                f"the stream's chunks last {stream.chunk_s:g} s but the model's stopping policy "
                f"was trained on {halting.chunk_s:g} s; stream with rl.chunk_s={halting.chunk_s:g}"
            )
        states = torch.from_numpy(stream.hidden).unsqueeze(0)
        posteriors = torch.from_numpy(stream.posteriors).unsqueeze(0)
        with torch.no_grad():
            logits = halting.stop_logits(states, posteriors)
        heard.append(int(halting.decide(logits, torch.tensor([stream.chunks]))[0]))
    return np.array(heard, dtype=int)


class HaltingDecider:
    """The stopping policy inside a joint model (`python -m ser.rl.train rl=joint`)."""

    def __init__(self, recognizer: Recognizer) -> None:
        halting = getattr(recognizer.module, "halting", None)
        if halting is None:
            raise SerError(
                f"{recognizer.source} has no stopping policy of its own; give an Emo-RL policy "
                "(--policy policy_*.zip) or train a joint model (`python -m ser.rl.train rl=joint`)"
            )
        self.halting: HaltingPolicy = halting
        self.chunk_s = halting.chunk_s

    def decide(self, recognizer: Recognizer, wave: np.ndarray) -> Decision:
        stream = _stream(recognizer, wave, self.chunk_s)
        (heard,) = halting_decisions(self.halting, [stream])
        return _decision(recognizer, stream, int(heard))


# Whatever decides when to stop listening: `decide(recognizer, wave) -> Decision`.
EarlyDecider = EarlyPolicy | HaltingDecider


def early_decider(recognizer: Recognizer, policy: EarlyPolicy | None = None) -> EarlyDecider | None:
    """Who decides when to stop listening: a given Emo-RL policy, else the model's own
    stopping policy where it has one (a joint model), else nobody."""
    if policy is not None:
        check_streaming(recognizer)
        return policy
    if getattr(recognizer.module, "halting", None) is not None:
        return HaltingDecider(recognizer)
    return None


def _stream(recognizer: Recognizer, wave: np.ndarray, chunk_s: float) -> UtteranceStream:
    check_streaming(recognizer)
    return stream_wave(recognizer, wave, chunk_s, source=recognizer.source)


def _decision(recognizer: Recognizer, stream: UtteranceStream, heard: int) -> Decision:
    label = recognizer.class_names[int(np.argmax(stream.posteriors[heard - 1]))]
    return Decision(float(stream.seconds_heard(heard)), float(stream.fraction_heard(heard)), label)

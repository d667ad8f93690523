"""Gymnasium environments over precomputed utterance streams.

StreamingEmotionEnv (Emo-RL, Lakomkin et al. 2018): an episode is one utterance heard chunk by
chunk; after each chunk the agent WAITs (hears more, paying `wait_cost`) or TERMINATEs
(commits to the classifier's current prediction). At the end of the utterance the episode ends
with the full-utterance prediction.

LabelEnv (Rajapakshe et al., arXiv 2101.00738): a one-step episode whose actions are the
emotion labels, rewarded +1 when right and `wrong` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ser.errors import SerError
from ser.inference.early import WAIT, ObservationSpec
from ser.inference.streaming import UtteranceStream


@dataclass(frozen=True)
class Reward:
    correct: float = 1.0
    wrong: float = -1.0
    wait_cost: float = 0.01  # lambda: the price of hearing one more chunk

    def of(self, predicted: int, label: int) -> float:
        return self.correct if predicted == label else self.wrong


class StreamingEmotionEnv(gym.Env):
    """WAIT (0) or TERMINATE (1) after each chunk of one utterance."""

    # gym.Env declares metadata an instance attribute with a class default, as here.
    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012
    observation_space: gym.spaces.Box

    def __init__(
        self,
        streams: Sequence[UtteranceStream],
        reward: Reward | None = None,
        observation: ObservationSpec | None = None,
        max_seconds: float | None = None,
    ) -> None:
        if not streams:
            raise SerError("no utterance streams to play; check the dataset split")
        self.streams = list(streams)
        self.reward = reward or Reward()
        self.spec_obs = observation or ObservationSpec()
        classes = self.streams[0].posteriors.shape[1]
        hidden = self.streams[0].hidden.shape[1]
        size = self.spec_obs.size(classes, hidden)
        longest = max_seconds or max(s.duration_s for s in self.streams)
        low = np.zeros(size, dtype=np.float32)
        high = np.ones(size, dtype=np.float32)
        i = classes
        if self.spec_obs.hidden:
            low[i : i + hidden], i = -1.0, i + hidden  # LSTM outputs are in (-1, 1)
        if self.spec_obs.elapsed:
            high[i + 1], i = max(longest, 1.0), i + 2
        if self.spec_obs.entropy:
            high[i], i = np.log(classes), i + 1
        if self.spec_obs.change:
            high[i] = 2.0
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._stream: UtteranceStream | None = None
        self._heard = 0

    def _obs(self) -> np.ndarray:
        assert self._stream is not None  # set by reset(), which step() checks for
        obs = self.spec_obs.build(self._stream, np.array(self._heard))
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _info(self) -> dict[str, Any]:
        s = self._stream
        assert s is not None  # set by reset(), which step() checks for
        predicted = int(np.argmax(s.posteriors[self._heard - 1]))
        return {
            "chunks": self._heard,
            "fraction": float(s.fraction_heard(self._heard)),
            "seconds": float(s.seconds_heard(self._heard)),
            "predicted": predicted,
            "label": s.label,
            "correct": predicted == s.label,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A random utterance (seeded), or `options={"index": i}`; the first chunk is heard."""
        super().reset(seed=seed)
        if options and "index" in options:
            index = int(options["index"])
        else:
            index = int(self.np_random.integers(len(self.streams)))
        self._stream, self._heard = self.streams[index], 1
        return self._obs(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._stream is None:
            raise RuntimeError("call reset() before step()")
        s = self._stream
        if int(action) == WAIT and self._heard < s.chunks:
            self._heard += 1
            return self._obs(), -self.reward.wait_cost, False, False, self._info()
        # TERMINATE, or the utterance ended: the current (then full-utterance) prediction.
        info = self._info()
        reward = self.reward.of(info["predicted"], s.label)
        return self._obs(), reward, True, False, info


class LabelEnv(gym.Env):
    """One step: observe an utterance's features, answer with a label."""

    # gym.Env declares metadata an instance attribute with a class default, as here.
    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        observations: np.ndarray,
        labels: Sequence[int],
        num_classes: int,
        correct: float = 1.0,
        wrong: float = -0.1,
    ) -> None:
        if len(observations) == 0:
            raise SerError("no utterances to learn labels from; check the dataset split")
        self.observations = np.asarray(observations, dtype=np.float32)
        self.labels = np.asarray(labels)
        self.correct, self.wrong = correct, wrong
        bound = float(np.abs(self.observations).max()) + 1.0
        self.observation_space = gym.spaces.Box(
            -bound, bound, shape=self.observations.shape[1:], dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(num_classes)
        self._index = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "index" in options:
            self._index = int(options["index"])
        else:
            self._index = int(self.np_random.integers(len(self.labels)))
        return self.observations[self._index].copy(), {"label": int(self.labels[self._index])}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        label = int(self.labels[self._index])
        reward = self.correct if int(action) == label else self.wrong
        return self.observations[self._index].copy(), reward, True, False, {"label": label}

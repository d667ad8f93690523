"""Reinforcement learning over streaming audio: Emo-RL early decisions and a label DQN."""

from ser.rl.env import LabelEnv, ObservationSpec, Reward, StreamingEmotionEnv
from ser.rl.streams import UtteranceStream, check_streaming, stream_wave

__all__ = [
    "LabelEnv",
    "ObservationSpec",
    "Reward",
    "StreamingEmotionEnv",
    "UtteranceStream",
    "check_streaming",
    "stream_wave",
]

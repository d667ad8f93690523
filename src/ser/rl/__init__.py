"""Reinforcement learning over streaming audio: Emo-RL early decisions and a label DQN."""

from ser.rl.env import LabelEnv, Reward, StreamingEmotionEnv

__all__ = ["LabelEnv", "Reward", "StreamingEmotionEnv"]

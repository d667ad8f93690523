"""Adaptive halting: a stopping policy trained together with a streaming classifier, the
second Emo-RL design (EARLIEST, Hartvigsen et al., KDD 2019).

After every chunk of audio the policy reads the causal classifier's LSTM state, its running
posterior (sorted: how confident it is, not in what) and the time heard, and gives the
probability of stopping now. In training one episode is sampled per
utterance (stop at the first chunk whose coin says stop, else at the end); the classifier is
trained by cross-entropy at that stopping point, the policy by REINFORCE on the return
`reward(correct at the stop) - wait_cost * chunks waited after this one`, with a learned
baseline and an entropy bonus. The policy's gradient reaches the classifier's encoder through
the state it reads, so the representation is trained for the stopping decision too, which
the first design (a frozen classifier, then a DQN on its outputs) cannot do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ser.errors import SerError


@dataclass
class Chunks:
    """The chunk grid of a padded batch: where each chunk ends and which chunks exist."""

    ends: torch.Tensor  # (B, K) the frame index at the end of each chunk (clamped to the last)
    valid: torch.Tensor  # (B, K) bool: the utterance has this chunk
    counts: torch.Tensor  # (B,) chunks per utterance


def chunk_grid(lengths: torch.Tensor, chunk_frames: int) -> Chunks:
    """Chunks of `chunk_frames` frames over utterances of `lengths` frames; the last chunk of
    each may be shorter, as in streaming (`ser.inference.streaming.stream_wave`)."""
    counts = torch.div(lengths + chunk_frames - 1, chunk_frames, rounding_mode="floor").clamp_min(1)
    steps = torch.arange(1, int(counts.max()) + 1, device=lengths.device)
    ends = torch.minimum(steps.unsqueeze(0) * chunk_frames, lengths.unsqueeze(1)) - 1
    return Chunks(ends.clamp_min(0), steps.unsqueeze(0) <= counts.unsqueeze(1), counts)


def first_stop(stop: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B,) 1-based stops: the first chunk where `stop` (B, K) holds among each utterance's
    `counts` chunks, else its last chunk."""
    steps = torch.arange(1, stop.shape[1] + 1, device=stop.device)
    chosen = stop & (steps <= counts.unsqueeze(1))
    return torch.where(chosen, steps, counts.unsqueeze(1).to(steps.dtype)).min(dim=1).values


@dataclass
class HaltingOutcome:
    """One batch of episodes: where each stopped, and the losses of the joint objective."""

    stops: torch.Tensor  # (B,) 1-based chunk at which each utterance stopped
    logits_at_stop: torch.Tensor  # (B, C)
    policy_loss: torch.Tensor
    baseline_loss: torch.Tensor
    fraction: torch.Tensor  # (B,) share of the utterance's frames heard at the stop
    returns: torch.Tensor  # (B,) the episode's return from its first chunk


def build_halting(
    settings: dict | None, net: nn.Module, num_classes: int, frame_rate: float
) -> HaltingPolicy | None:
    """The halting policy a model config asks for (`model.halting`, set by rl=joint), sized to
    the net's LSTM state and classes; None where there is none."""
    if not settings:
        return None
    hidden_size = getattr(net, "hidden_size", None)
    if not getattr(net, "causal", False) or hidden_size is None:
        raise SerError("a halting policy needs a streaming classifier; add model.causal=true")
    from hydra.utils import instantiate

    return instantiate(
        settings,
        hidden_size=int(hidden_size),
        num_classes=int(num_classes),
        frame_rate=float(frame_rate),
    )


class HaltingPolicy(nn.Module):
    """A stopping policy over a causal classifier's per-chunk LSTM state.

    `frame_rate` (feature frames per second) and `chunk_s` set the chunk grid; the stream
    used at inference (`rl.chunk_s`) must use the same. Rewards: `correct` / `wrong` at the
    stop, `wait_cost` (λ) per chunk waited. The stop probability starts near
    `initial_stop_probability`, so that early in training episodes hear most of the audio.
    """

    def __init__(
        self,
        hidden_size: int,
        num_classes: int,
        frame_rate: float,
        chunk_s: float = 0.25,
        wait_cost: float = 0.02,
        entropy_weight: float = 0.01,
        correct: float = 1.0,
        wrong: float = -1.0,
        threshold: float = 0.5,
        initial_stop_probability: float = 0.1,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        if not chunk_s > 0:
            raise SerError(f"rl.chunk_s={chunk_s} must be > 0 seconds, e.g. rl.chunk_s=0.25")
        if wait_cost < 0 or entropy_weight < 0:
            raise SerError(
                f"wait_cost={wait_cost} and entropy_weight={entropy_weight} must be >= 0"
            )
        if not 0 < threshold < 1 or not 0 < initial_stop_probability < 1:
            raise SerError("halting threshold and initial_stop_probability must be in (0, 1)")
        # Kept with the weights: a checkpoint rebuilds the policy without the feature extractor.
        self.register_buffer("frame_rate", torch.tensor(float(frame_rate)))
        self.chunk_frames = max(1, round(chunk_s * frame_rate))
        self.chunk_s = self.chunk_frames / frame_rate  # whole feature frames, as streams are
        self.wait_cost = float(wait_cost)
        self.entropy_weight = float(entropy_weight)
        self.correct, self.wrong = float(correct), float(wrong)
        self.threshold = float(threshold)
        self.warmup_epochs = int(warmup_epochs)
        # Reads the state (with gradient: it shapes the encoder), the sorted running posterior
        # (the confidence of the answer it would give, which the state alone does not hold:
        # the posterior is a mean over every frame so far) and the seconds heard.
        inputs = hidden_size + num_classes + 1
        self.policy = nn.Linear(inputs, 1)
        # Small weights: the stop probability starts near `initial_stop_probability` everywhere
        # (zero weights would block the gradient to the encoder at the first steps).
        nn.init.normal_(self.policy.weight, std=0.01)
        p = initial_stop_probability
        nn.init.constant_(self.policy.bias, math.log(p / (1 - p)))
        # The expected return, for a lower-variance REINFORCE; it never trains the encoder.
        self.baseline = nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, 1))

    def _inputs(self, states: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
        """(B, K, H) states and (B, K, C) running posteriors at the chunk ends, with the
        seconds heard after each chunk."""
        steps = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
        seconds = (steps * self.chunk_s).view(1, -1, 1).expand(states.shape[0], -1, 1)
        confidence = posteriors.sort(dim=-1, descending=True).values
        return torch.cat([states, confidence, seconds], dim=-1)

    def stop_logits(self, states: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
        """(B, K, H) LSTM outputs and (B, K, C) running posteriors at the end of each chunk
        -> (B, K) logits of stopping."""
        return self.policy(self._inputs(states, posteriors)).squeeze(-1)

    def decide(self, stop_logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Deterministic stops (1-based): the first chunk by which the sampled policy would have
        stopped with probability `threshold` (0.5: the median of its stopping time), else the
        last chunk of each utterance. A per-chunk probability (say 0.1 after every chunk)
        would never reach 0.5 although the policy stops mid-utterance when sampled."""
        waited = torch.cumsum(nn.functional.logsigmoid(-stop_logits), dim=1)  # log P(not yet)
        return first_stop(1 - torch.exp(waited) >= self.threshold, counts)

    def episodes(
        self,
        prefix_logits: torch.Tensor,
        hidden: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        sample: bool = True,
    ) -> HaltingOutcome:
        """Run one episode per utterance: `prefix_logits` (B, T, C) is the running posterior
        after every frame and `hidden` (B, T, H) the LSTM output; stops are sampled from the
        policy (training) or taken deterministically (`sample=False`)."""
        grid = chunk_grid(lengths, self.chunk_frames)
        rows = torch.arange(len(lengths), device=lengths.device).unsqueeze(1)
        states = hidden[rows, grid.ends]  # (B, K, H)
        posteriors = torch.softmax(prefix_logits[rows, grid.ends], dim=-1)  # (B, K, C)
        logits = self.stop_logits(states, posteriors)
        if sample:
            coins = torch.bernoulli(torch.sigmoid(logits.detach())).bool()
            stops = first_stop(coins, grid.counts)
        else:
            stops = self.decide(logits, grid.counts)
        index = torch.arange(len(lengths), device=lengths.device)
        logits_at_stop = prefix_logits[index, grid.ends[index, stops - 1]]
        right = logits_at_stop.argmax(dim=-1) == targets
        reward = torch.where(right, self.correct, self.wrong).to(logits.dtype)
        steps = torch.arange(1, logits.shape[1] + 1, device=logits.device).unsqueeze(0)
        # A decision is taken after every chunk but the last (there the stream ends anyway).
        decided = (steps <= stops.unsqueeze(1)) & (steps < grid.counts.unsqueeze(1))
        returns = reward.unsqueeze(1) - self.wait_cost * (stops.unsqueeze(1) - steps)
        baseline = self.baseline(self._inputs(states.detach(), posteriors.detach())).squeeze(-1)
        advantage = (returns - baseline).detach()
        log_stop = nn.functional.logsigmoid(logits)
        log_wait = nn.functional.logsigmoid(-logits)
        log_prob = torch.where(steps == stops.unsqueeze(1), log_stop, log_wait)
        p = torch.sigmoid(logits)
        entropy = -(p * log_stop + (1 - p) * log_wait)
        mask = decided.to(logits.dtype)
        n = mask.sum().clamp_min(1.0)
        policy_loss = -((advantage * log_prob + self.entropy_weight * entropy) * mask).sum() / n
        baseline_loss = (((baseline - returns) ** 2) * mask).sum() / n
        heard = torch.minimum(stops * self.chunk_frames, lengths).to(logits.dtype)
        return HaltingOutcome(
            stops=stops,
            logits_at_stop=logits_at_stop,
            policy_loss=policy_loss,
            baseline_loss=baseline_loss,
            fraction=heard / lengths.clamp_min(1).to(logits.dtype),
            returns=returns[:, 0],
        )

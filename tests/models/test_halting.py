"""The joint classifier + halting policy (rl=joint): the REINFORCE estimator's sign, the
policy's gradient reaching the encoder, and a toy where only an early cue tells the label."""

from __future__ import annotations

import functools

import pytest
import torch

from ser.errors import SerError
from ser.models.halting import HaltingPolicy, build_halting, chunk_grid
from ser.models.module import SERModule
from ser.models.nets.causal import running_mean
from ser.models.nets.lstm import LSTM, CausalLSTM


def test_the_chunk_grid_ends_each_utterance_on_its_last_frame() -> None:
    grid = chunk_grid(torch.tensor([10, 4, 1]), chunk_frames=4)
    assert grid.counts.tolist() == [3, 1, 1]
    assert grid.ends[0].tolist() == [3, 7, 9]
    assert grid.valid.tolist() == [[True, True, True], [True, False, False], [True, False, False]]
    assert grid.ends[1, 0] == 3 and grid.ends[2, 0] == 0


def two_step_toy(right_at_first: bool, n: int = 4000) -> tuple[torch.Tensor, ...]:
    """Two chunks of one frame each. The running posterior is right after the second chunk,
    and after the first only if `right_at_first`; the state is the same everywhere."""
    prefix = torch.zeros(n, 2, 2)
    prefix[:, 1, 0] = 5.0  # right (class 0) after both chunks
    prefix[:, 0, 0 if right_at_first else 1] = 5.0
    hidden = torch.zeros(n, 2, 3)
    return prefix, hidden, torch.full((n,), 2), torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("right_at_first", [True, False])
def test_reinforce_raises_the_stop_probability_only_where_stopping_pays(
    right_at_first: bool,
) -> None:
    torch.manual_seed(0)
    policy = HaltingPolicy(3, 2, frame_rate=4.0, chunk_s=0.25, wait_cost=0.1, entropy_weight=0.0)
    policy.policy.bias.data.fill_(0.0)  # stop with p = 0.5 after the first chunk
    out = policy.episodes(*two_step_toy(right_at_first))
    out.policy_loss.backward()
    # Stopping after the first chunk earns +1 (right) or -1 (wrong); waiting earns 1 - 0.1.
    # Gradient descent raises the bias (the stop probability) only where stopping pays: the
    # expected gradient is -p (1 - p) (return of stopping - return of waiting).
    grad = float(policy.policy.bias.grad)
    assert grad < 0 if right_at_first else grad > 0
    expected = -0.25 * ((1.0 if right_at_first else -1.0) - 0.9)
    assert grad == pytest.approx(expected, abs=0.015)


def test_a_stop_is_sampled_per_utterance_and_the_last_chunk_always_ends_it() -> None:
    policy = HaltingPolicy(3, 2, frame_rate=4.0, chunk_s=0.25, initial_stop_probability=0.01)
    prefix, hidden, lengths, targets = two_step_toy(True, n=200)
    out = policy.episodes(prefix, hidden, lengths, targets)
    assert set(out.stops.tolist()) <= {1, 2} and (out.stops == 2).float().mean() > 0.9
    greedy = policy.episodes(prefix, hidden, lengths, targets, sample=False)
    assert greedy.stops.tolist() == [2] * 200  # p = 0.01 < 0.5: never stops before the end
    assert torch.allclose(greedy.fraction, torch.ones(200))


def test_the_policy_gradient_reaches_the_encoder_and_the_baseline_does_not() -> None:
    torch.manual_seed(0)
    net = CausalLSTM(5, 3, hidden_size=8, num_layers=1, dropout=0.0)
    policy = HaltingPolicy(8, 3, frame_rate=100.0, chunk_s=0.05, initial_stop_probability=0.3)
    x, lengths, y = torch.randn(16, 20, 5), torch.full((16,), 20), torch.randint(0, 3, (16,))
    logits, hidden, _ = net.frame_outputs(x)
    out = policy.episodes(running_mean(logits), hidden, lengths, y)
    out.policy_loss.backward(retain_graph=True)
    assert net.rnn.weight_ih_l0.grad is not None and net.rnn.weight_ih_l0.grad.abs().sum() > 0
    net.zero_grad()
    out.baseline_loss.backward()
    assert net.rnn.weight_ih_l0.grad is None or net.rnn.weight_ih_l0.grad.abs().sum() == 0


def early_cue_batch(n: int, frames: int = 40, dim: int = 4) -> tuple[torch.Tensor, ...]:
    """Utterances whose first 5 frames carry the class; the other 35 are noise."""
    y = torch.randint(0, 2, (n,))
    x = torch.randn(n, frames, dim)
    x[:, :5, 0] += torch.where(y == 0, 3.0, -3.0).unsqueeze(1)
    return x, torch.full((n,), frames), y


def test_the_joint_model_learns_to_stop_at_the_early_cue_and_be_right() -> None:
    torch.manual_seed(0)
    net = CausalLSTM(4, 2, hidden_size=16, num_layers=1, dropout=0.0)
    halting = HaltingPolicy(
        16, 2, frame_rate=100.0, chunk_s=0.05, wait_cost=0.05, initial_stop_probability=0.1
    )
    module = SERModule(
        net,
        ["a", "b"],
        functools.partial(torch.optim.Adam, lr=0.01),
        halting=halting,
        prefix_loss_weight=0.2,
    )
    optimizer = module.configure_optimizers()
    module.train()
    for _ in range(100):
        optimizer.zero_grad()
        module.training_step(early_cue_batch(64), 0).backward()
        optimizer.step()
    module.eval()
    x, lengths, y = early_cue_batch(500)
    with torch.no_grad():
        logits, hidden, _ = net.frame_outputs(module.normalise(x, lengths))
        out = halting.episodes(running_mean(logits), hidden, lengths, y, sample=False)
    accuracy = (out.logits_at_stop.argmax(-1) == y).float().mean()
    # 8 chunks of 5 frames: the cue is all in the first, and the policy stops there.
    assert accuracy > 0.95
    assert out.fraction.mean() < 0.3


def test_a_halting_policy_needs_a_streaming_classifier() -> None:
    settings = {"_target_": "ser.models.halting.HaltingPolicy", "chunk_s": 0.25}
    with pytest.raises(SerError, match=r"model\.causal=true"):
        build_halting(settings, LSTM(4, 2), 2, frame_rate=100.0)
    assert isinstance(build_halting(settings, CausalLSTM(4, 2), 2, 100.0), HaltingPolicy)
    assert build_halting(None, LSTM(4, 2), 2, 100.0) is None
    with pytest.raises(SerError, match="chunk_s"):
        HaltingPolicy(4, 2, frame_rate=100.0, chunk_s=0.0)


def test_the_deterministic_stop_is_the_median_of_the_sampled_stopping_time() -> None:
    policy = HaltingPolicy(3, 2, frame_rate=4.0, chunk_s=0.25)
    p = torch.tensor([[0.2] * 6, [0.6] + [0.0001] * 5])
    logits = torch.log(p / (1 - p))
    # stopped by chunk k with probability 1 - 0.8^k: 0.2, 0.36, 0.49, 0.59 -> chunk 4
    assert policy.decide(logits, torch.tensor([6, 6])).tolist() == [4, 1]
    assert policy.decide(logits, torch.tensor([3, 6])).tolist() == [3, 1]  # ends first

"""Causal (streaming) nets: a chunk-by-chunk stream gives exactly the full-pass posteriors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser.errors import SerError
from ser.models.module import SERModule
from ser.models.nets import CNNLSTM, LSTM


@pytest.mark.parametrize(
    "net",
    [
        lambda: CNNLSTM(20, 4, channels=[4, 8], hidden_size=16, causal=True),
        lambda: LSTM(20, 4, hidden_size=16, num_layers=2, causal=True),
    ],
    ids=["cnn_lstm", "lstm"],
)
def test_streaming_matches_full_pass(net) -> None:
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(2, 57, 20)
    with torch.no_grad():
        logits, hidden, _ = model.frame_outputs(x)
        running = logits.cumsum(1) / torch.arange(1, 58)[None, :, None]
        state, seen = None, 0
        for size in (25, 1, 20, 11):  # uneven chunks, one shorter than the conv context
            out, last_hidden, state = model.stream(x[:, seen : seen + size], state)
            seen += size
            torch.testing.assert_close(out, running[:, seen - 1], atol=1e-5, rtol=0)
            torch.testing.assert_close(last_hidden, hidden[:, seen - 1], atol=1e-5, rtol=0)
        # forward() on a padded batch: each utterance's logits see only its own frames
        lengths = torch.tensor([57, 30])
        full = model(x, lengths)
    torch.testing.assert_close(full[0], running[0, 56], atol=1e-5, rtol=0)
    torch.testing.assert_close(full[1], running[1, 29], atol=1e-5, rtol=0)


def test_causal_output_ignores_the_future() -> None:
    torch.manual_seed(0)
    model = CNNLSTM(20, 3, channels=[4], hidden_size=8, causal=True).eval()
    x = torch.randn(1, 40, 20)
    changed = x.clone()
    changed[:, 30:] += 5.0
    with torch.no_grad():
        a, _, _ = model.frame_outputs(x)
        b, _, _ = model.frame_outputs(changed)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_bidirectional_model_is_not_causal() -> None:
    assert not CNNLSTM(20, 3, channels=[4], hidden_size=8).causal
    assert CNNLSTM(20, 3, channels=[4], hidden_size=8, causal=True).causal


def test_prefix_loss_scores_the_running_posterior_after_every_frame() -> None:
    torch.manual_seed(0)
    net = CNNLSTM(20, 4, channels=[4, 8], hidden_size=16, causal=True)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.5])
    module = SERModule(net, list("abcd"), class_weights=weights, prefix_loss_weight=0.25).eval()
    x, lengths, y = torch.randn(3, 40, 20), torch.tensor([40, 25, 9]), torch.tensor([0, 1, 3])
    x[1, 25:], x[2, 9:] = 0, 0  # padding, as pad_collate leaves it
    with torch.no_grad():
        logits, prefix_loss = module._logits_and_prefix_loss(x, lengths, y)
        torch.testing.assert_close(logits, module(x, lengths), atol=1e-5, rtol=0)
        prefix = net.prefix_logits(module.normalise(x, lengths))
        per_utterance = torch.stack(
            [
                nn.functional.cross_entropy(prefix[i, :n], y[i].repeat(int(n))).mean()
                for i, n in enumerate(lengths)
            ]
        )
        expected = (weights[y] * per_utterance).sum() / weights[y].sum()
        torch.testing.assert_close(prefix_loss, expected)
        full_loss = nn.functional.cross_entropy(logits, y, weight=weights)
        assert not torch.isclose(prefix_loss, full_loss)
        total = module._step((x, lengths, y), "train")
        torch.testing.assert_close(total, 0.75 * full_loss + 0.25 * prefix_loss)
        # validation and test score the whole utterance only
        torch.testing.assert_close(module._step((x, lengths, y), "val"), full_loss)


def test_prefix_loss_needs_a_causal_net_and_a_weight_in_0_1() -> None:
    with pytest.raises(SerError, match=r"model\.causal=true"):
        SERModule(
            CNNLSTM(20, 4, channels=[4, 8], hidden_size=16), list("ab"), prefix_loss_weight=0.5
        )
    with pytest.raises(SerError, match=r"\[0, 1\]"):
        SERModule(LSTM(20, 2, hidden_size=8, causal=True), list("ab"), prefix_loss_weight=1.5)

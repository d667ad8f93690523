"""Causal (streaming) nets: a chunk-by-chunk stream gives exactly the full-pass posteriors;
model.causal picks them, and checkpoints that passed `causal` to LSTM or CNNLSTM still load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from ser.errors import SerError
from ser.models.module import CONFIG_KEY, SERModule, load_checkpoint
from ser.models.nets import (
    CNNLSTM,
    LSTM,
    CausalCNNLSTM,
    CausalLSTM,
    cnn_lstm_net,
    lstm_net,
)
from ser.train import build_model

ComposeFn = Callable[..., DictConfig]


@pytest.mark.parametrize(
    "net",
    [
        lambda: CausalCNNLSTM(20, 4, channels=[4, 8], hidden_size=16),
        lambda: CausalLSTM(20, 4, hidden_size=16, num_layers=2),
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
    model = CausalCNNLSTM(20, 3, channels=[4], hidden_size=8).eval()
    x = torch.randn(1, 40, 20)
    changed = x.clone()
    changed[:, 30:] += 5.0
    with torch.no_grad():
        a, _, _ = model.frame_outputs(x)
        b, _, _ = model.frame_outputs(changed)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


PAIRS = {"lstm": (LSTM, CausalLSTM, lstm_net), "cnn_lstm": (CNNLSTM, CausalCNNLSTM, cnn_lstm_net)}


@pytest.mark.parametrize("name", PAIRS)
def test_the_pooled_and_the_streaming_net_are_classes_of_their_own(name: str) -> None:
    pooled, streaming, _ = PAIRS[name]
    assert not pooled.causal
    assert streaming.causal
    assert hasattr(streaming, "stream") and not hasattr(pooled, "stream")
    with pytest.raises(TypeError, match="causal"):
        pooled(20, 3, causal=True)
    with pytest.raises(TypeError, match="bidirectional"):
        streaming(20, 3, bidirectional=False)  # forward-only by construction


@pytest.mark.parametrize("name", PAIRS)
def test_the_factory_picks_the_net_by_causal(name: str) -> None:
    pooled, streaming, factory = PAIRS[name]
    settings = {"input_dim": 20, "num_classes": 3, "hidden_size": 8, "bidirectional": True}
    assert type(factory(**settings)) is pooled
    assert type(factory(causal=False, **settings)) is pooled
    # `bidirectional`, set in the config for the pooled net, is left out of the streaming one
    assert type(factory(causal=True, **settings)) is streaming
    assert factory(causal=False, **{**settings, "bidirectional": False}).rnn.out_size == 8
    assert factory(causal=False, **settings).rnn.out_size == 16


@pytest.mark.parametrize("name", PAIRS)
def test_model_causal_in_the_config_builds_the_streaming_class(
    name: str, make_cfg: ComposeFn
) -> None:
    pooled, streaming, _ = PAIRS[name]
    datamodule = SimpleNamespace(  # what build_model reads from the data
        feature_dim=20,
        num_classes=4,
        labels=list("abcd"),
        feature_stats=lambda: (torch.zeros(20), torch.ones(20)),
        class_weights=lambda: torch.ones(4),
        manifest=pd.DataFrame({"speaker": ["s1", "s2"], "split": ["train", "test"]}),
    )
    for overrides, cls in (
        ([], pooled),
        (["model.causal=false"], pooled),
        (["model.causal=true"], streaming),
        (["model.causal=true", "model.prefix_loss_weight=0.5"], streaming),
    ):
        model = build_model(make_cfg([f"model={name}", *overrides]), datamodule)
        assert type(model.net) is cls, overrides


LEGACY_SETTINGS = {
    "lstm": {"hidden_size": 8, "num_layers": 2},
    "cnn_lstm": {"channels": [4], "kernel_size": 3, "hidden_size": 8, "num_layers": 1},
}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("lstm", "ser.models.nets.LSTM"),
        ("lstm", "ser.models.nets.lstm.LSTM"),
        ("cnn_lstm", "ser.models.nets.CNNLSTM"),
        ("cnn_lstm", "ser.models.nets.cnn_lstm.CNNLSTM"),
    ],
)
def test_checkpoints_that_pass_causal_to_the_net_still_load(
    name: str, target: str, causal: bool, tmp_path: Path
) -> None:
    """Checkpoints from before the causal nets were classes of their own name LSTM or CNNLSTM
    with `causal` (and `bidirectional`, also when causal) in the stored net config."""
    torch.manual_seed(0)
    pooled, streaming, _ = PAIRS[name]
    settings = LEGACY_SETTINGS[name]
    net = streaming(20, 3, **settings) if causal else pooled(20, 3, bidirectional=True, **settings)
    module = SERModule(net, list("abc"), feature_mean=torch.randn(20), feature_std=torch.rand(20))
    stored = {"_target_": target, **settings, "bidirectional": True, "dropout": 0.3}
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": {"class_names": list("abc")},
            CONFIG_KEY: {"model": {"net": {**stored, "causal": causal}}},
        },
        tmp_path / "old.ckpt",
    )
    loaded, _ = load_checkpoint(tmp_path / "old.ckpt")
    assert type(loaded.net) is type(net)
    x, lengths = torch.randn(2, 30, 20), torch.tensor([30, 12])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, lengths), module.eval()(x, lengths))


def test_prefix_loss_scores_the_running_posterior_after_every_frame() -> None:
    torch.manual_seed(0)
    net = CausalCNNLSTM(20, 4, channels=[4, 8], hidden_size=16)
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
        SERModule(CausalLSTM(20, 2, hidden_size=8), list("ab"), prefix_loss_weight=1.5)

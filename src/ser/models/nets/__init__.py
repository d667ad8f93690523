"""Classifier nets. Each maps padded features (B, T, D) and lengths (B,) to logits (B, classes);
input_dim and num_classes come from the data, never from a model config.

LSTM and CNNLSTM have streaming counterparts, CausalLSTM and CausalCNNLSTM (`net.causal` is
True). conf/model/lstm.yaml and cnn_lstm.yaml name the factories below, which pick one of the
pair by `model.causal`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ser.models.nets.cnn import CNN
from ser.models.nets.cnn_lstm import CNNLSTM, CausalCNNLSTM
from ser.models.nets.lstm import LSTM, CausalLSTM
from ser.models.nets.mlp import MLP

__all__ = [
    "CNN",
    "CNNLSTM",
    "LSTM",
    "MLP",
    "CausalCNNLSTM",
    "CausalLSTM",
    "cnn_lstm_net",
    "lstm_net",
    "upgrade_net_config",
]


# A streaming net is forward-only: `bidirectional`, which the configs set for the pooled net,
# is left out of the causal one rather than refused, so that `model.causal=true` just works.


def lstm_net(causal: bool = False, bidirectional: bool = True, **settings: Any) -> nn.Module:
    """CausalLSTM when causal (model.causal=true), else LSTM."""
    if causal:
        return CausalLSTM(**settings)
    return LSTM(bidirectional=bidirectional, **settings)


def cnn_lstm_net(causal: bool = False, bidirectional: bool = True, **settings: Any) -> nn.Module:
    """CausalCNNLSTM when causal (model.causal=true), else CNNLSTM."""
    if causal:
        return CausalCNNLSTM(**settings)
    return CNNLSTM(bidirectional=bidirectional, **settings)


# Checkpoints from before the causal nets were classes of their own store a net config that
# names LSTM or CNNLSTM and passes it `causal`; the factories take exactly those settings.
_LEGACY_TARGETS = {
    "ser.models.nets.LSTM": "ser.models.nets.lstm_net",
    "ser.models.nets.lstm.LSTM": "ser.models.nets.lstm_net",
    "ser.models.nets.CNNLSTM": "ser.models.nets.cnn_lstm_net",
    "ser.models.nets.cnn_lstm.CNNLSTM": "ser.models.nets.cnn_lstm_net",
}


def upgrade_net_config(net: Mapping[str, Any]) -> dict[str, Any]:
    """A net config stored in a checkpoint, as the nets of today take it."""
    net = dict(net)
    if "causal" in net and net.get("_target_") in _LEGACY_TARGETS:
        net["_target_"] = _LEGACY_TARGETS[net["_target_"]]
    return net

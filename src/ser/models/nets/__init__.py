"""Classifier nets. Each maps padded features (B, T, D) and lengths (B,) to logits (B, classes);
input_dim and num_classes come from the data, never from a model config."""

from ser.models.nets.cnn import CNN
from ser.models.nets.cnn_lstm import CNNLSTM
from ser.models.nets.lstm import LSTM
from ser.models.nets.mlp import MLP

__all__ = ["CNN", "CNNLSTM", "LSTM", "MLP"]

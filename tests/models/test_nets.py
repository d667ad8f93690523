"""The nets: shapes, padding invariance, input sizes derived from the features."""

from __future__ import annotations

import pytest
import torch

from ser.models.nets import CNN, CNNLSTM, LSTM, MLP, CausalCNNLSTM, CausalLSTM
from ser.models.nets.layers import MaskedLSTM, reverse_padded

NETS = {
    "mlp": lambda d, c: MLP(d, c, hidden_sizes=[32]),
    "cnn": lambda d, c: CNN(d, c, channels=[4, 8]),
    "lstm": lambda d, c: LSTM(d, c, hidden_size=16, num_layers=2),
    "cnn_lstm": lambda d, c: CNNLSTM(d, c, channels=[4, 8], hidden_size=16),
    "causal_lstm": lambda d, c: CausalLSTM(d, c, hidden_size=16, num_layers=2),
    "causal_cnn_lstm": lambda d, c: CausalCNNLSTM(d, c, channels=[4, 8], hidden_size=16),
}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("input_dim", [20, 40, 60])
def test_output_shape_follows_input_dim(name: str, input_dim: int) -> None:
    net = NETS[name](input_dim, 5).eval()
    out = net(torch.randn(3, 37, input_dim), torch.tensor([37, 20, 1]))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NETS)
def test_padding_does_not_change_the_prediction(name: str) -> None:
    torch.manual_seed(0)
    net = NETS[name](24, 4).eval()
    x = torch.randn(1, 33, 24)
    alone = net(x, torch.tensor([33]))
    padded = torch.cat([x, torch.zeros(1, 50, 24)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 83, 24)], dim=0)
    together = net(batch, torch.tensor([33, 83]))[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_reverse_padded_reverses_only_real_frames() -> None:
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([3, 5]))
    assert out[0, :, 0].tolist() == [2.0, 1.0, 0.0, 3.0, 4.0]
    assert out[1, :, 0].tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]


def test_masked_lstm_matches_packed_sequences() -> None:
    torch.manual_seed(0)
    ours = MaskedLSTM(6, 8, num_layers=1, bidirectional=True)
    ref = torch.nn.LSTM(6, 8, batch_first=True, bidirectional=True)
    fwd, bwd = ours.layers[0]
    with torch.no_grad():
        for suffix, src in (("", fwd), ("_reverse", bwd)):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{kind}_l0{suffix}").copy_(getattr(src, f"{kind}_l0"))
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 6])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=True, enforce_sorted=False
    )
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)
    got = ours(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[i, :n], expected[i, :n], atol=1e-5, rtol=1e-4)


def test_too_many_conv_blocks_for_the_features_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="only 4 dims"):
        CNN(4, 3, channels=[4, 4, 4])

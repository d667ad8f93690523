"""eGeMAPS through openSMILE: dimensions, frame rate, both levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.data.synthetic import synthesize_utterance
from ser.errors import SerError

pytest.importorskip("opensmile", reason="openSMILE is an optional extra (.[opensmile])")

from ser.features.egemaps import EGeMAPS


def test_lld_gives_25_descriptors_every_10_ms() -> None:
    wave = torch.from_numpy(synthesize_utterance(0, "angry", 0))
    feats = EGeMAPS(level="lld")(wave)
    assert feats.shape[1] == 25
    assert abs(feats.shape[0] - len(wave) / 160) <= 5
    assert torch.isfinite(feats).all()


def test_functionals_give_88_per_utterance_and_differ_by_emotion() -> None:
    extractor = EGeMAPS(level="functionals")
    batch = [synthesize_utterance(0, e, 0) for e in ("sad", "angry")]
    n = min(len(w) for w in batch)
    feats = extractor(torch.from_numpy(np.stack([w[:n] for w in batch])))
    assert feats.shape == (2, 1, 88)
    assert not torch.allclose(feats[0], feats[1])


def test_unknown_level_is_named() -> None:
    with pytest.raises(SerError, match="lld or functionals"):
        EGeMAPS(level="frames")

"""openSMILE feature sets: dimensions, frame rate, both levels, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.data.voice import synthesize_utterance
from ser.errors import SerError

pytest.importorskip("opensmile", reason="openSMILE is an optional extra (.[opensmile])")

from ser.features.smile import DIMS, OpenSMILE


@pytest.mark.parametrize("feature_set", sorted(DIMS))
def test_lld_gives_the_sets_descriptors_every_10_ms(feature_set: str) -> None:
    wave = torch.from_numpy(synthesize_utterance(0, "angry", 0))
    extractor = OpenSMILE(feature_set=feature_set, level="lld")
    feats = extractor(wave)
    assert feats.shape[1] == extractor.dim == DIMS[feature_set]["lld"]
    assert abs(feats.shape[0] - len(wave) / 160) <= 5
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("feature_set", sorted(DIMS))
def test_functionals_are_one_frame_per_utterance_and_differ_by_emotion(feature_set: str) -> None:
    extractor = OpenSMILE(feature_set=feature_set, level="functionals")
    batch = [synthesize_utterance(0, e, 0) for e in ("sad", "angry")]
    n = min(len(w) for w in batch)
    feats = extractor(torch.from_numpy(np.stack([w[:n] for w in batch])))
    assert feats.shape == (2, 1, DIMS[feature_set]["functionals"])
    assert torch.isfinite(feats).all()
    assert not torch.allclose(feats[0], feats[1])


def test_unknown_level_and_set_are_named() -> None:
    with pytest.raises(SerError, match="lld or functionals"):
        OpenSMILE(level="frames")
    with pytest.raises(SerError, match="ComParE_2016"):
        OpenSMILE(feature_set="IS09")

"""Tests of the source-filter voice behind the synthetic corpus (one utterance at a time)."""

from __future__ import annotations

import numpy as np
import pytest

from ser.data.voice import synthesize_utterance

SR = 16000


def test_synthesize_utterance_contract() -> None:
    wave = synthesize_utterance(1, "angry", 0, sample_rate=SR, min_duration=0.6, max_duration=0.9)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.6 * SR <= len(wave) <= 0.9 * SR
    assert 0.0 < np.abs(wave).max() < 1.0
    np.testing.assert_array_equal(wave, synthesize_utterance(1, "angry", 0, 16000, 0, 8, 0.6, 0.9))
    assert not np.array_equal(wave, synthesize_utterance(1, "angry", 1, 16000, 0, 8, 0.6, 0.9))
    with pytest.raises(ValueError, match="emotion"):
        synthesize_utterance(0, "bored", 0)
    with pytest.raises(ValueError, match="speaker"):
        synthesize_utterance(8, "sad", 0, n_speakers=8)

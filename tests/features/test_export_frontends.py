"""The export-friendly front-ends (DFT by convolution, no complex numbers) equal torchaudio's
LogMel and MFCC, and onnx_frontend picks them or falls back to the extractor itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.data.voice import synthesize_utterance
from ser.features.export_frontends import ExportLogMel, ExportMFCC, onnx_frontend
from ser.features.spectral import MFCC, LogMel


@pytest.mark.parametrize("extractor", [LogMel(n_mels=40, f_max=8000.0), MFCC(n_mels=40)])
def test_the_export_front_ends_equal_torchaudio(extractor: torch.nn.Module) -> None:
    rewritten = ExportLogMel(extractor) if isinstance(extractor, LogMel) else ExportMFCC(extractor)
    wave = synthesize_utterance(0, "angry", 0, 16000, min_duration=1.0, max_duration=1.0)
    batch = torch.from_numpy(np.stack([wave, wave[::-1].copy()]))
    want = extractor(batch)
    got = rewritten(batch)
    assert got.shape == want.shape
    # log features: float32 rounding of a DFT by convolution vs an FFT
    assert (got - want).abs().max() <= 1e-3


def test_onnx_frontend_rewrites_what_it_can_and_keeps_the_rest() -> None:
    assert isinstance(onnx_frontend(LogMel()), ExportLogMel)
    assert isinstance(onnx_frontend(MFCC()), ExportMFCC)
    other = torch.nn.Identity()  # not a spectral front-end: left to the export check
    assert onnx_frontend(other) is other
    uncentred = LogMel()
    uncentred.mel.spectrogram.center = False  # a setting the DFT rewrite does not cover
    assert onnx_frontend(uncentred) is uncentred

"""Decoding and cleaning audio before features: mono, resampling, normalisation, trimming."""

from ser.preprocess.audio import Preprocessor, read_audio

__all__ = ["Preprocessor", "read_audio"]

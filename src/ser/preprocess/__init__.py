"""Decoding and cleaning audio before features: mono, resampling, noise reduction, trimming,
normalisation; and cutting long recordings into windows."""

from ser.preprocess.audio import MIN_FRAME_S, Preprocessor, frame_samples, read_audio
from ser.preprocess.denoise import Denoise
from ser.preprocess.segment import segment, segment_bounds
from ser.preprocess.trim import Trim, silero_model

__all__ = [
    "MIN_FRAME_S",
    "Denoise",
    "Preprocessor",
    "Trim",
    "frame_samples",
    "read_audio",
    "segment",
    "segment_bounds",
    "silero_model",
]

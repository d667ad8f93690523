"""Feature extractors (torch modules: waveform -> frames x dims) and the feature cache."""

from ser.features.cache import FeatureCache, file_fingerprint
from ser.features.extract import extract_corpus
from ser.features.spectral import MFCC, LogMel

__all__ = ["MFCC", "FeatureCache", "LogMel", "extract_corpus", "file_fingerprint"]

"""Corpus-level extraction: preprocess each file, compute features, reuse the cache."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ser.errors import AudioError
from ser.features.cache import FeatureCache, config_digest, file_fingerprint
from ser.preprocess import Preprocessor

log = logging.getLogger(__name__)


@dataclass
class Extraction:
    """Features per input path (None where the file was skipped) and why files were skipped."""

    features: list[np.ndarray | None]
    fingerprints: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    cache_hits: int = 0


def features_of(wave: np.ndarray, extractor: nn.Module) -> np.ndarray:
    """Frame-level features of one waveform as float32 (frames, dim)."""
    with torch.no_grad():
        return extractor(torch.from_numpy(wave)).numpy().astype(np.float32, copy=False)


def extract_corpus(
    paths: Sequence[str],
    preprocessor: Preprocessor,
    extractor: nn.Module,
    extractor_config: dict,
    cache: FeatureCache | None = None,
    progress: bool = True,
    waveform_fn: Callable[[np.ndarray, int], np.ndarray] | None = None,
    waveform_config: dict | None = None,
) -> Extraction:
    """Features for every path; unusable files are collected in `skipped` with their reason.

    `waveform_fn(wave, sample_rate)` is a deterministic transform of each preprocessed waveform
    (a speed-perturbed copy, say); `waveform_config` describes it and is part of the cache key.
    """
    if waveform_fn is not None and waveform_config is None:
        raise ValueError("waveform_fn needs a waveform_config that names it in the cache key")
    parts = [preprocessor.config(), extractor_config]
    # Without a transform the key is unchanged, so existing caches stay valid.
    settings = config_digest(*parts, waveform_config) if waveform_fn else config_digest(*parts)
    result = Extraction(features=[])
    # Per-utterance transforms are too small to split across threads: one thread is many times
    # faster than several that contend with each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _extract_into(
            result, paths, preprocessor, extractor, settings, cache, progress, waveform_fn
        )
    finally:
        torch.set_num_threads(threads)
    if result.skipped:
        log.warning(
            "skipped %d of %d files: %s",
            len(result.skipped),
            len(paths),
            "; ".join(f"{p}: {r}" for p, r in list(result.skipped.items())[:5]),
        )
    return result


def _extract_into(
    result: Extraction,
    paths: Sequence[str],
    preprocessor: Preprocessor,
    extractor: nn.Module,
    settings: str,
    cache: FeatureCache | None,
    progress: bool,
    waveform_fn: Callable[[np.ndarray, int], np.ndarray] | None,
) -> None:
    for path in tqdm(paths, desc="features", unit="file", disable=not progress):
        feats = None
        try:
            fingerprint = file_fingerprint(path)
        except OSError as err:
            fingerprint = f"unreadable:{path}"
            result.skipped[str(path)] = f"cannot read file ({err.strerror}); check the path"
        else:
            key = config_digest(fingerprint, settings)
            feats = cache.get(key) if cache else None
            if feats is not None:
                result.cache_hits += 1
            else:
                try:
                    wave = preprocessor.load(path)
                    if waveform_fn is not None:
                        wave = waveform_fn(wave, preprocessor.sample_rate)
                    feats = features_of(wave, extractor)
                    if len(feats) == 0:
                        raise AudioError(path, "too short for one analysis window of the features")
                except AudioError as err:
                    feats = None
                    result.skipped[str(path)] = err.reason
                if feats is not None and cache:
                    cache.put(key, feats)
        result.fingerprints.append(fingerprint)
        result.features.append(feats)

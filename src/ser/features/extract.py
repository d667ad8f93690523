"""Corpus-level extraction: preprocess each file, compute features, reuse the cache."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import joblib
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ser.errors import AudioError, SerError
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
    n_jobs: int | None = -1,
) -> Extraction:
    """Features for every path; unusable files are collected in `skipped` with their reason.

    `waveform_fn(wave, sample_rate)` is a deterministic transform of each preprocessed waveform
    (a speed-perturbed copy, say); `waveform_config` describes it and is part of the cache key.
    Files not in the cache are preprocessed and extracted by `n_jobs` worker processes (-1 or
    None: one per core; 1: in this process). Each worker writes its files' cache entries
    atomically, so parallel runs and crashes never leave a half-written entry. An extractor
    with `extract_batch` (a pretrained encoder) runs in this process on every thread, a few
    batches of files at a time: one copy of a large model, and batched calls are its speed.
    """
    if waveform_fn is not None and waveform_config is None:
        raise ValueError("waveform_fn needs a waveform_config that names it in the cache key")
    parts = [preprocessor.config(), extractor_config]
    identity = getattr(extractor, "identity", None)
    if callable(identity):
        # A pretrained encoder is named by its config and weights, not only by its name.
        parts.append(identity())
    # Without a transform the key is unchanged, so existing caches stay valid.
    settings = config_digest(*parts, waveform_config) if waveform_fn else config_digest(*parts)
    result = Extraction(features=[None] * len(paths))
    todo: list[tuple[int, str, str | None]] = []  # (index, path, cache key) to extract
    for index, path in enumerate(paths):
        try:
            fingerprint = file_fingerprint(path)
        except OSError as err:
            result.fingerprints.append(f"unreadable:{path}")
            result.skipped[str(path)] = f"cannot read file ({err.strerror}); check the path"
            continue
        result.fingerprints.append(fingerprint)
        key = config_digest(fingerprint, settings)
        feats = cache.get(key) if cache else None
        if feats is None:
            todo.append((index, str(path), key if cache else None))
        else:
            result.features[index] = feats
            result.cache_hits += 1
    batch_size = int(getattr(extractor, "batch_size", 1))
    batched = callable(getattr(extractor, "extract_batch", None))
    workers = 1 if batched else min(resolve_jobs(n_jobs), len(todo))
    job = functools.partial(
        _extract_files,
        preprocessor=preprocessor,
        extractor=extractor,
        cache=cache,
        waveform_fn=waveform_fn,
    )
    with tqdm(total=len(todo), desc="features", unit="file", disable=not progress) as bar:
        if workers <= 1:
            step = 4 * batch_size if batched else 1  # a few batches to sort by length
            outputs = (job(todo[i : i + step]) for i in range(0, len(todo), step))
        else:
            # A few chunks per worker: little pickling, and the cores stay busy to the end.
            chunks = [todo[i :: workers * 4] for i in range(workers * 4)]
            outputs = joblib.Parallel(n_jobs=workers, return_as="generator_unordered")(
                joblib.delayed(job)(chunk) for chunk in chunks if chunk
            )
        for output in outputs:
            for index, feats, reason in output:
                result.features[index] = feats
                if reason is not None:
                    result.skipped[str(paths[index])] = reason
            bar.update(len(output))
    if result.skipped:
        # Reported in input order, whichever worker finished first.
        order = {str(p): i for i, p in enumerate(paths)}
        result.skipped = dict(sorted(result.skipped.items(), key=lambda kv: order[kv[0]]))
        log.warning(
            "skipped %d of %d files: %s",
            len(result.skipped),
            len(paths),
            "; ".join(f"{p}: {r}" for p, r in list(result.skipped.items())[:5]),
        )
    return result


def resolve_jobs(n_jobs: int | None) -> int:
    """joblib's convention: -1 (or None) is every core, -2 all but one; at least 1."""
    if n_jobs is None or n_jobs < 0:
        return max(1, joblib.cpu_count() + 1 + (n_jobs or -1))
    if n_jobs == 0:
        raise SerError("features.n_jobs=0 runs nothing; use 1 (in-process) or -1 (all cores)")
    return n_jobs


def _extract_files(
    items: Sequence[tuple[int, str, str | None]],
    preprocessor: Preprocessor,
    extractor: nn.Module,
    cache: FeatureCache | None,
    waveform_fn: Callable[[np.ndarray, int], np.ndarray] | None,
) -> list[tuple[int, np.ndarray | None, str | None]]:
    """(index, features or None, skip reason or None) of each file; runs in a worker process
    or in this one. A file whose extraction raises is skipped with the error as its reason."""
    batched = callable(getattr(extractor, "extract_batch", None))
    threads = torch.get_num_threads()
    if not batched:
        # Per-utterance transforms are too small to split across threads: one thread is many
        # times faster than several that contend with each other (the cores go to the workers).
        torch.set_num_threads(1)
    out: list[tuple[int, np.ndarray | None, str | None]] = []
    try:
        loaded: list[tuple[int, str, str | None, np.ndarray]] = []
        for index, path, key in items:
            try:
                wave = preprocessor.load(path)
                if waveform_fn is not None:
                    wave = waveform_fn(wave, preprocessor.sample_rate)
                loaded.append((index, path, key, wave))
            except Exception as err:
                out.append((index, None, _skip_reason(err)))
        computed: list[np.ndarray] | None = None
        if batched and len(loaded) > 1:
            try:
                computed = extractor.extract_batch([wave for *_, wave in loaded])  # type: ignore[operator]
            except Exception:  # one file's failure: extracted one by one below, to name it
                computed = None
        for position, (index, path, key, wave) in enumerate(loaded):
            try:
                feats = computed[position] if computed is not None else features_of(wave, extractor)
                if len(feats) == 0:
                    raise AudioError(path, "too short for one analysis window of the features")
            except Exception as err:
                out.append((index, None, _skip_reason(err)))
                continue
            if cache is not None and key is not None:
                cache.put(key, feats)
            out.append((index, feats, None))
    finally:
        torch.set_num_threads(threads)
    return out


def _skip_reason(err: Exception) -> str:
    """Why a file was skipped: an audio problem's own reason; any other crash of one file is
    its skip reason too, not the end of the run."""
    if isinstance(err, AudioError):
        return err.reason
    return f"feature extraction failed ({type(err).__name__}: {err})"

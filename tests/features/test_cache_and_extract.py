"""Feature extraction over a corpus: cache hits and misses, invalidation, atomic writes,
unusable files collected with their reason."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.features import FeatureCache, LogMel, extract_corpus
from ser.features.cache import config_digest
from ser.preprocess import Preprocessor


def write_tone(path: Path, freq: float = 220.0, seconds: float = 0.5, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), rate)
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    return [str(write_tone(tmp_path / f"{f}.wav", f)) for f in (200.0, 300.0, 400.0)]


def run(files: list[str], cache: FeatureCache, n_mels: int = 32, normalize: str = "peak"):
    extractor = LogMel(n_mels=n_mels)
    return extract_corpus(
        files,
        Preprocessor(normalize=normalize),
        extractor,
        {"n_mels": n_mels},
        cache,
        progress=False,
    )


def test_second_run_reads_the_cache(files: list[str], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    first = run(files, cache)
    second = run(files, cache)
    assert (first.cache_hits, second.cache_hits) == (0, 3)
    for a, b in zip(first.features, second.features, strict=True):
        np.testing.assert_array_equal(a, b)


def test_feature_or_preprocess_change_recomputes(files: list[str], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    run(files, cache)
    assert run(files, cache, n_mels=40).cache_hits == 0
    assert run(files, cache, normalize="rms").cache_hits == 0
    assert run(files, cache).cache_hits == 3


def test_a_waveform_transform_is_applied_and_keyed_by_its_config(
    files: list[str], tmp_path: Path
) -> None:
    cache, extractor = FeatureCache(tmp_path / "cache"), LogMel(n_mels=32)

    def halve(wave: np.ndarray, sample_rate: int) -> np.ndarray:
        return wave[: len(wave) // 2]

    def copies(config: dict) -> object:
        return extract_corpus(
            files, Preprocessor(), extractor, {"n_mels": 32}, cache, False, halve, config
        )

    plain = run(files, cache)
    half = copies({"half": True})
    assert half.cache_hits == 0  # not served the untransformed entries
    for a, b in zip(plain.features, half.features, strict=True):
        assert abs(len(b) - len(a) / 2) <= 1
    assert copies({"half": True}).cache_hits == 3 and copies({"half": 2}).cache_hits == 0
    assert run(files, cache).cache_hits == 3  # the plain key is unchanged
    with pytest.raises(ValueError, match="waveform_config"):
        extract_corpus(files, Preprocessor(), extractor, {}, cache, False, halve)


def test_changed_audio_content_misses(files: list[str], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    run(files, cache)
    write_tone(Path(files[0]), 900.0)
    assert run(files, cache).cache_hits == 2


def test_interrupted_write_leaves_no_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    key = config_digest("x")

    # np.save writes the header, then fails to pickle the lambda: a write interrupted midway.
    with pytest.raises((pickle.PicklingError, AttributeError)):
        cache.put(key, np.array([lambda: 0], dtype=object))
    assert cache.get(key) is None
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_damaged_entry_is_recomputed(files: list[str], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    run(files, cache)
    entry = next((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(b"garbage")
    result = run(files, cache)
    assert result.cache_hits == 2
    assert all(f is not None for f in result.features)


def test_unusable_files_are_skipped_with_reasons(files: list[str], tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    paths = [*files, str(silent), str(corrupt), str(tmp_path / "missing.wav")]
    result = run(paths, FeatureCache(tmp_path / "cache"))
    assert [f is None for f in result.features] == [False] * 3 + [True] * 3
    assert "silent" in result.skipped[str(silent)]
    assert "cannot decode" in result.skipped[str(corrupt)]
    assert "check the path" in result.skipped[str(tmp_path / "missing.wav")]


def test_audio_shorter_than_the_feature_window_is_skipped(tmp_path: Path) -> None:
    from ser.features.pyaa import PyAAFeatures

    short = str(write_tone(tmp_path / "short.wav", seconds=0.03))  # under one 50 ms window
    result = extract_corpus(
        [short],
        Preprocessor(trim=None),
        PyAAFeatures(),
        {"pyaa": 1},
        FeatureCache(tmp_path / "cache"),
        progress=False,
    )
    assert result.features == [None]
    assert "too short for one analysis window" in result.skipped[short]


def test_worker_processes_give_the_in_process_result_and_cache(
    files: list[str], tmp_path: Path
) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000), 16000)
    more = [str(write_tone(tmp_path / f"m{f}.wav", f, seconds=0.7)) for f in range(500, 1300, 100)]
    paths = [files[0], str(silent), *more, str(tmp_path / "missing.wav"), *files[1:]]

    def extract(cache_dir: str, n_jobs: int):
        cache = FeatureCache(tmp_path / cache_dir)
        result = extract_corpus(
            paths, Preprocessor(), LogMel(n_mels=32), {"n_mels": 32}, cache, False, n_jobs=n_jobs
        )
        entries = {p.relative_to(cache.root): p.read_bytes() for p in cache.root.rglob("*.npy")}
        return result, entries

    one, one_cache = extract("one", 1)
    two, two_cache = extract("two", 2)
    assert len(one_cache) == len(paths) - 2 and one_cache == two_cache  # byte for byte
    for a, b in zip(one.features, two.features, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)
    assert one.fingerprints == two.fingerprints
    assert list(two.skipped) == [str(silent), str(tmp_path / "missing.wav")]  # input order
    assert one.skipped == two.skipped
    assert extract("two", 2)[0].cache_hits == len(paths) - 2


def test_a_crash_in_one_files_extraction_is_that_files_skip_reason(
    files: list[str], tmp_path: Path
) -> None:
    crashing = str(write_tone(tmp_path / "crash.wav", 500.0, seconds=0.9))

    def fragile(wave: np.ndarray, sample_rate: int) -> np.ndarray:
        if len(wave) > 0.8 * sample_rate:  # only the long file
            raise RuntimeError("extractor bug")
        return wave

    for n_jobs in (1, 2):
        result = extract_corpus(
            [*files, crashing],
            Preprocessor(trim=None),
            LogMel(n_mels=32),
            {},
            FeatureCache(tmp_path / f"cache{n_jobs}"),
            False,
            fragile,
            {"fragile": True},
            n_jobs=n_jobs,
        )
        assert [f is None for f in result.features] == [False, False, False, True]
        assert result.skipped == {
            crashing: "feature extraction failed (RuntimeError: extractor bug)"
        }
        assert not list((tmp_path / f"cache{n_jobs}").rglob(".tmp-*"))  # no half-written entry


def test_job_counts_follow_joblib() -> None:
    import joblib

    from ser.errors import SerError
    from ser.features.extract import resolve_jobs

    cores = joblib.cpu_count()
    assert resolve_jobs(-1) == resolve_jobs(None) == cores
    assert resolve_jobs(-2) == max(1, cores - 1)
    assert resolve_jobs(3) == 3
    with pytest.raises(SerError, match="n_jobs=0"):
        resolve_jobs(0)

"""Tests of the procedurally generated emotional-speech corpus (files, markers, index)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser.data.synthetic import COMPLETE_MARKER, ensure_corpus, index_corpus
from ser.data.voice import EMOTIONS, synthesize_utterance

SR = 16000
SMALL = {"n_speakers": 2, "utterances_per_emotion": 2}
N_FFT, HOP = 512, 256
MEL = librosa.filters.mel(sr=SR, n_fft=N_FFT)


def _wav_bytes(corpus_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(corpus_dir)): p.read_bytes() for p in sorted(corpus_dir.rglob("*.wav"))
    }


def _describe(path: str) -> tuple[np.ndarray, dict[str, float]]:
    """Quick utterance features (MFCC/RMS/pitch mean and std) and a few prosodic measurements."""
    y, sr = sf.read(path, dtype="float32")
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(MEL @ power), n_mfcc=20)
    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)
    f0 = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=HOP)
    log_f0 = np.log(f0)
    frames = np.vstack([mfcc, rms])
    features = np.concatenate([frames.mean(1), frames.std(1), [log_f0.mean(), log_f0.std()]])
    # Prosody is measured on the loud (vowel) frames only, where YIN is reliable.
    loud = rms[0] > 0.3 * rms.max()
    semitones = 12 * np.log2(f0[loud] / 100.0)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    centroid = (freqs @ power[:, loud]) / power[:, loud].sum(0)
    stats = {
        "level_db": 20 * np.log10(np.sqrt(np.mean(y**2))),
        "f0_st": float(np.median(semitones)),
        "f0_range_st": float(np.percentile(semitones, 90) - np.percentile(semitones, 10)),
        "centroid_hz": float(np.median(centroid)),
        "duration": len(y) / sr,
    }
    return features, stats


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The full default corpus (8 speakers x 4 emotions x 20), generated once; and its time."""
    start = time.perf_counter()
    corpus_dir = ensure_corpus(tmp_path_factory.mktemp("synthetic"))
    return corpus_dir, time.perf_counter() - start


@pytest.fixture(scope="module")
def measured(default_corpus: tuple[Path, float]) -> tuple[pd.DataFrame, np.ndarray]:
    """The corpus index with per-file measurements, and the feature matrix."""
    index = index_corpus(default_corpus[0])
    with threadpool_limits(1):  # tiny matrices: threading only adds overhead on a busy machine
        described = [_describe(p) for p in index["path"]]
    stats = pd.DataFrame([s for _, s in described])
    features = np.array([f for f, _ in described])
    return pd.concat([index, stats], axis=1), features


def test_same_seed_gives_identical_files_different_seed_differs(tmp_path: Path) -> None:
    first = _wav_bytes(ensure_corpus(tmp_path / "a", **SMALL, seed=3))
    second = _wav_bytes(ensure_corpus(tmp_path / "b", **SMALL, seed=3))
    other = _wav_bytes(ensure_corpus(tmp_path / "c", **SMALL, seed=4))
    assert len(first) == 2 * len(EMOTIONS) * 2
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_audio_does_not_depend_on_corpus_size_or_order(tmp_path: Path) -> None:
    # Each utterance is seeded by its own identity, so a bigger corpus contains the smaller one.
    small = _wav_bytes(ensure_corpus(tmp_path, n_speakers=1, utterances_per_emotion=1))
    large_dir = ensure_corpus(tmp_path, n_speakers=3, utterances_per_emotion=2)
    large = _wav_bytes(large_dir)
    assert small
    assert all(large[name] == data for name, data in small.items())
    wave = synthesize_utterance(2, "sad", 1)
    stored, sr = sf.read(large_dir / "spk02" / "spk02_sad_001.wav")
    assert sr == SR
    np.testing.assert_allclose(stored, wave, atol=1.0 / 32767)


def test_layout_format_and_levels(default_corpus: tuple[Path, float]) -> None:
    corpus_dir, _ = default_corpus
    index = index_corpus(corpus_dir)
    assert list(index.columns) == ["path", "speaker", "label", "gender"]
    assert len(index) == 8 * len(EMOTIONS) * 20 == len(list(corpus_dir.rglob("*.wav")))
    assert index["path"].tolist() == sorted(index["path"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in index["path"])
    assert index.groupby(["speaker", "label"]).size().eq(20).all()
    assert sorted(index["speaker"].unique()) == [f"spk{s:02d}" for s in range(8)]
    assert set(index["label"]) == set(EMOTIONS)
    genders = index.groupby("speaker")["gender"].first()
    assert set(genders) == {"male", "female"}
    # Speaker-independent splits by index (train 0-5 / test 6-7) must hold both genders.
    assert set(genders.iloc[6:]) == {"male", "female"}
    for path in index["path"]:
        name = Path(path).name
        assert name.startswith(Path(path).parent.name + "_")
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert 1.5 <= info.frames / SR <= 4.0, name
        wave = sf.read(path, dtype="int16")[0].astype(float)
        assert np.abs(wave).max() < 32767, f"{name} clips"
        rms = np.sqrt(np.mean(wave**2))
        assert rms > 100, f"{name} is (nearly) silent"
        # Short leading/trailing silence: the first/last 40 ms hold only the faint noise floor,
        # which is never pure digital silence.
        edges = np.concatenate([wave[: int(0.04 * SR)], wave[-int(0.04 * SR) :]])
        assert 0 < np.sqrt(np.mean(edges**2)) < 0.15 * rms, name


def test_emotions_differ_like_acted_speech(measured: tuple[pd.DataFrame, np.ndarray]) -> None:
    stats, _ = measured
    # Compare within speakers, so speaker pitch and loudness do not blur the emotion effects.
    per_speaker = stats.groupby(["speaker", "label"])[
        ["level_db", "f0_st", "f0_range_st", "centroid_hz", "duration"]
    ].mean()
    by = {emo: per_speaker.xs(emo, level="label") for emo in EMOTIONS}

    def wins(a: str, b: str, column: str, margin: float = 0.0) -> int:
        return int((by[a][column] > by[b][column] + margin).sum())

    # Loudness: angry > neutral > sad, by several dB.
    assert wins("angry", "sad", "level_db", 6.0) >= 7
    assert wins("angry", "neutral", "level_db") >= 7
    assert wins("neutral", "sad", "level_db") >= 7
    # Pitch: happy and angry raised, sad lowered.
    assert wins("happy", "sad", "f0_st", 1.5) >= 7
    assert wins("angry", "sad", "f0_st", 1.5) >= 7
    assert wins("happy", "neutral", "f0_st") >= 6
    # Pitch range: happy wide, sad narrow.
    assert wins("happy", "sad", "f0_range_st", 1.0) >= 7
    # Spectral tilt: angry has relatively more high-frequency energy than sad.
    assert wins("angry", "sad", "centroid_hz", 100.0) >= 7
    # Speaking rate: the same number of syllables takes longer when sad.
    assert wins("sad", "angry", "duration") >= 7
    assert wins("sad", "happy", "duration") >= 7
    # Speakers: female voices are higher than male ones.
    neutral = stats[stats["label"] == "neutral"].groupby("gender")["f0_st"]
    assert neutral.min()["female"] > neutral.max()["male"] - 3.0
    assert neutral.median()["female"] - neutral.median()["male"] > 7.0


def test_speaker_independent_model_is_good_not_perfect(
    measured: tuple[pd.DataFrame, np.ndarray],
) -> None:
    stats, features = measured
    speaker = stats["speaker"].str[3:].astype(int).to_numpy()
    labels = stats["label"].to_numpy(dtype=object)
    uars = []
    for test_speakers in [(6, 7), (0, 1), (2, 5)]:
        test = np.isin(speaker, test_speakers)
        scaler = StandardScaler().fit(features[~test])
        model = LogisticRegression(class_weight="balanced", max_iter=2000)
        model.fit(scaler.transform(features[~test]), labels[~test])
        predicted = model.predict(scaler.transform(features[test]))
        uars.append(balanced_accuracy_score(labels[test], predicted))
    assert all(0.4 < uar < 0.97 for uar in uars), uars


def test_default_corpus_generation_is_fast(default_corpus: tuple[Path, float]) -> None:
    # Generous bound (the target is ~10 s on one core) so a busy CI machine does not flake.
    assert default_corpus[1] < 60.0


def test_interrupted_generation_is_completed(tmp_path: Path) -> None:
    corpus_dir = ensure_corpus(tmp_path, **SMALL)
    before = _wav_bytes(corpus_dir)
    untouched = corpus_dir / "spk01" / "spk01_neutral_000.wav"
    untouched_stat = untouched.stat()

    # Simulate a crash: no marker yet, one file never written, a stale temporary file left.
    (corpus_dir / COMPLETE_MARKER).unlink()
    missing = corpus_dir / "spk00" / "spk00_happy_001.wav"
    missing.unlink()
    stray = corpus_dir / "spk00" / ".tmp-spk00_happy_001.wav-crash.wav"
    stray.write_bytes(b"RIFF")
    os.utime(stray, (time.time() - 3600, time.time() - 3600))
    with pytest.raises(FileNotFoundError, match=COMPLETE_MARKER):
        index_corpus(corpus_dir)

    assert ensure_corpus(tmp_path, **SMALL) == corpus_dir
    assert _wav_bytes(corpus_dir) == before
    assert not stray.exists()
    assert (corpus_dir / COMPLETE_MARKER).is_file()
    assert len(index_corpus(corpus_dir)) == len(before)
    # Files that were already complete are kept, not rewritten.
    assert untouched.stat().st_mtime_ns == untouched_stat.st_mtime_ns
    assert untouched.stat().st_ino == untouched_stat.st_ino


def test_complete_corpus_is_reused_and_checked(tmp_path: Path) -> None:
    corpus_dir = ensure_corpus(tmp_path, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in corpus_dir.rglob("*.wav")}
    assert ensure_corpus(tmp_path, **SMALL) == corpus_dir
    assert {p: p.stat().st_mtime_ns for p in corpus_dir.rglob("*.wav")} == stamps
    # Other parameters live in another folder.
    assert ensure_corpus(tmp_path, **SMALL, max_duration=3.0) != corpus_dir

    # A marker that promises files which are gone is reported, not silently trusted...
    lost = next(iter(stamps))
    lost_bytes = lost.read_bytes()
    lost.unlink()
    with pytest.raises(FileNotFoundError, match="ensure_corpus"):
        index_corpus(corpus_dir)
    # ... and the next ensure_corpus puts the file back.
    ensure_corpus(tmp_path, **SMALL)
    assert lost.read_bytes() == lost_bytes
    assert len(index_corpus(corpus_dir)) == len(stamps)
    with pytest.raises(FileNotFoundError, match="not a complete synthetic corpus"):
        index_corpus(tmp_path / "nothing-here")

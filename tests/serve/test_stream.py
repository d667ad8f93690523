"""ser-stream: sliding-window timeline, its CSV and PNG, and one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.errors import SerError
from ser.inference.recognizer import Recognizer, load_recognizer
from ser.serve import stream
from ser.serve.stream import stream_timeline, timeline_wave, window_bounds


@pytest.fixture(scope="module")
def recognizer(trained_run) -> Recognizer:
    return load_recognizer(trained_run.checkpoint)


@pytest.fixture(scope="module")
def long_wav(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four corpus utterances with pauses between them (about 10 s), resampled to 22.05 kHz."""
    import librosa

    corpus = Path(trained_run.config.paths.data_dir) / "synthetic"
    files = sorted(corpus.rglob("spk00_*_000.wav"))[:4]
    assert files, f"no corpus files under {corpus}"
    parts = []
    for path in files:
        data, rate = sf.read(path, dtype="float32")
        parts += [data, np.zeros(rate // 3, dtype=np.float32)]
    wave = librosa.resample(np.concatenate(parts), orig_sr=rate, target_sr=22050)
    path = tmp_path_factory.mktemp("stream") / "long.wav"
    sf.write(path, wave, 22050)
    return path


@pytest.mark.parametrize("n", [1, 400, 16000, 16001, 16000 + 3999, 16000 + 4000, 160_123])
def test_window_bounds_cover_the_recording_with_equal_windows(n: int) -> None:
    bounds = window_bounds(n, 16000, window_s=1.0, hop_s=0.25)
    assert bounds[0, 0] == 0 and bounds[-1, 1] == n
    lengths = bounds[:, 1] - bounds[:, 0]
    assert np.all(lengths == min(n, 16000))
    assert np.all(np.diff(bounds[:, 0]) > 0) and np.all(np.diff(bounds[:, 0]) <= 4000)


@pytest.mark.parametrize(("window_s", "hop_s"), [(0.05, 0.01), (1.0, 0), (1.0, 1.5), (60, 1)])
def test_bad_window_or_hop_is_a_user_error(recognizer: Recognizer, window_s, hop_s) -> None:
    with pytest.raises(SerError, match=r"window|hop"):
        stream_timeline(recognizer, np.zeros(16000, np.float32), window_s, hop_s)


def test_timeline_rows_are_posteriors_of_each_window(recognizer: Recognizer, long_wav) -> None:
    data, rate = sf.read(long_wav, dtype="float32", always_2d=True)
    wave = timeline_wave(recognizer, data, rate, long_wav)
    # Untrimmed: the timeline's clock is the recording's.
    assert len(wave) == pytest.approx(len(data) * recognizer.sample_rate / rate, abs=2)
    timeline = stream_timeline(recognizer, wave, 1.0, 0.5)
    names = recognizer.class_names
    assert list(timeline.columns) == ["start_s", "end_s", *names, "label"]
    np.testing.assert_allclose(timeline[names].sum(axis=1), 1.0, atol=1e-5)
    assert (timeline["label"] == timeline[names].idxmax(axis=1)).all()
    # The third window, predicted on its own, gives the same posteriors.
    start, end = (timeline.loc[2, ["start_s", "end_s"]] * recognizer.sample_rate).round()
    alone = recognizer.posteriors(wave[int(start) : int(end)])
    np.testing.assert_allclose(timeline.loc[2, names].to_numpy(float), alone, atol=1e-5)


@pytest.mark.slow
def test_cli_writes_csv_and_png_covering_the_file(
    cli, python, repo_root, trained_run, long_wav, tmp_path
) -> None:
    out = tmp_path / "out"
    args = [python, "-m", "ser.serve.stream", str(long_wav), "--model", str(trained_run.checkpoint)]
    result = cli([*args, "--window-s", "1.0", "--hop-s", "0.25", "--out", str(out)], cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert "overall:" in result.stdout and "start_s" in result.stdout
    frame = pd.read_csv(out / "long_timeline.csv")
    names = list(frame.columns[2:-1])
    assert names == load_recognizer(trained_run.checkpoint).class_names
    duration = sf.info(long_wav).duration
    assert frame["start_s"].iloc[0] == 0
    assert frame["end_s"].iloc[-1] == pytest.approx(duration, abs=1e-3)
    assert (frame["start_s"].diff().dropna() <= 0.25 + 1e-6).all()  # no gaps between windows
    np.testing.assert_allclose(frame[names].sum(axis=1), 1.0, atol=1e-4)
    png = (out / "long_timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not list(out.glob(".tmp-*")), "atomic writes left temporary files"


def test_too_short_file_is_one_line_error(trained_run, tmp_path, capsys) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.5, np.float32), 16000)
    with pytest.raises(SystemExit) as exit_info:
        stream.main(
            [str(short), "--model", str(trained_run.checkpoint), "--out", str(tmp_path / "out")]
        )
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "too short" in lines[0], lines
    assert out == ""
    assert not (tmp_path / "out").exists()


def test_mic_without_sounddevice_names_the_fix(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        stream.main(["--mic", "1", "--model", "no-such-model.ckpt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'ser[mic]'" in err[0]


def test_mic_without_portaudio_names_the_fix() -> None:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    else:
        pytest.skip("PortAudio is installed here")
    with pytest.raises(SerError, match="libportaudio2"):
        stream.record_mic(1.0, 16000)


def test_file_and_mic_together_is_a_user_error(capsys) -> None:
    with pytest.raises(SystemExit):
        stream.main(["x.wav", "--mic", "1"])
    assert "either an audio FILE or --mic" in capsys.readouterr().err

"""ser-predict on files and folders, JSON and CSV checked against the Recognizer, per-file
failures, bad usage, and the choice of the default model. In process through main(argv); the
real command runs once, in a project folder of its own."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from ser.data.voice import synthesize_utterance
from ser.errors import SerError
from ser.inference.recognizer import Recognizer, load_recognizer
from ser.serve.predict import audio_files, main
from ser.tracking.registry import default_model

PREDICT = [sys.executable, "-m", "ser.serve.predict"]


@pytest.fixture(scope="module")
def recognizer(trained_run) -> Recognizer:
    return load_recognizer(trained_run.checkpoint)


def utterance(speaker: int, emotion: str, rate: int, seconds: float) -> np.ndarray:
    return synthesize_utterance(
        speaker, emotion, 1, rate, min_duration=seconds, max_duration=seconds
    )


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two utterances (WAV at 16 kHz, FLAC at 22.05 kHz in a subfolder) plus files a folder
    search must skip: a text file and a hidden folder."""
    root = tmp_path_factory.mktemp("audio")
    (root / "sub").mkdir()
    (root / ".hidden").mkdir()
    sf.write(root / "a.wav", utterance(0, "angry", 16000, 2.0), 16000)
    sf.write(root / "sub" / "b.flac", utterance(1, "sad", 22050, 1.5), 22050)
    sf.write(root / ".hidden" / "c.wav", synthesize_utterance(2, "happy", 0), 16000)
    (root / "notes.txt").write_text("not audio")
    return root


def check_against_recognizer(record: dict, path: Path, recognizer: Recognizer) -> None:
    expected = recognizer.predict_file(path)
    assert record["label"] == expected.label
    assert record["duration_s"] == pytest.approx(expected.duration_s, abs=1e-3)
    probs = record["probabilities"]
    assert list(probs) == recognizer.class_names
    for name in recognizer.class_names:
        # the output rounds to 4 decimals
        assert probs[name] == pytest.approx(expected.probabilities[name], abs=1e-4)


def test_json_on_a_folder_matches_the_recognizer(
    trained_run, audio_dir: Path, recognizer: Recognizer, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(trained_run.checkpoint)
    code = main([str(audio_dir), "--model", model, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = json.loads(out)
    # recursive, sorted, without the hidden folder and the text file
    expected = [audio_dir / "a.wav", audio_dir / "sub" / "b.flac"]
    assert [r["source"] for r in records] == list(map(str, expected))
    for record in records:
        check_against_recognizer(record, Path(record["source"]), recognizer)


def test_csv_to_a_file_matches_the_recognizer(
    trained_run,
    audio_dir: Path,
    recognizer: Recognizer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out" / "predictions.csv"
    files = [audio_dir / "sub" / "b.flac", audio_dir / "a.wav"]
    model = str(trained_run.checkpoint)
    args = ["--model", model, "--format", "csv", "--output", str(out)]
    code = main([*map(str, files), *args])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stdout == ""
    assert stderr == f"wrote 2 predictions to {out}\n"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["source", "label", "duration_s", *recognizer.class_names, "error"]
    assert [r["source"] for r in rows] == list(map(str, files))  # the order given
    for row in rows:
        record = {
            "label": row["label"],
            "duration_s": float(row["duration_s"]),
            "probabilities": {c: float(row[c]) for c in recognizer.class_names},
        }
        check_against_recognizer(record, Path(row["source"]), recognizer)
        assert row["error"] == ""
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_unusable_files_get_a_reason_and_the_others_are_predicted(
    trained_run, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt junk")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    good = audio_dir / "a.wav"
    code = main([str(corrupt), str(good), str(silent), "--model", str(trained_run.checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    failures = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failures) == 2
    assert failures[0].startswith(f"failed: {corrupt}: cannot decode audio")
    assert failures[1] == f"failed: {silent}: audio is silent (peak below -90 dBFS)"
    assert "2 of 3 files could not be used" in err
    table = out.splitlines()
    assert table[0].split()[:3] == ["file", "label", "duration_s"]
    good_row = next(line.split() for line in table if line.startswith(str(good)))
    assert good_row[1] in list(trained_run.config.dataset.labels)
    bad_row = next(line.split() for line in table if line.startswith(str(silent)))
    assert bad_row[1:3] == ["-", "-"]


def test_a_missing_model_is_one_error_line_and_exit_2(
    audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(audio_dir / "a.wav"), "--model", "nothere.ckpt"])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("error: model 'nothere.ckpt' not found")


def test_a_missing_path_is_bad_usage(
    audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(audio_dir / "a.wav"), str(tmp_path / "nope.wav"), "--model", "x.ckpt"])
    assert exit_info.value.code == 2
    missing = tmp_path / "nope.wav"
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder; check the path\n"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SerError, match="no audio files in this folder"):
        audio_files([tmp_path / "empty"])


def test_default_model_is_the_newest_finished_run_with_a_checkpoint(
    trained_run, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(SerError, match="no --model given and no MLflow store at"):
        default_model(uri)  # looking does not create an empty store
    assert not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    with pytest.raises(SerError, match="no --model given and no finished run with a checkpoint"):
        default_model(uri)

    def run(status: str, checkpoint: bool, start_ms: int) -> str:
        run_id = client.create_run(experiment, start_time=start_ms).info.run_id
        if checkpoint:
            client.log_artifact(run_id, str(trained_run.checkpoint), "checkpoints")
        client.set_terminated(run_id, status)
        return run_id

    with_checkpoint = run("FINISHED", True, 1_000)
    run("FINISHED", True, 500)  # older
    run("FINISHED", False, 2_000)  # newer, but no checkpoint (a classical model's run)
    run("FAILED", True, 3_000)  # newest, but failed
    assert default_model(uri) == with_checkpoint
    assert load_recognizer(with_checkpoint, uri).class_names == list(
        trained_run.config.dataset.labels
    )


def test_audio_below_the_models_rate_gets_a_warning_line(
    trained_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    narrow = tmp_path / "phone.wav"
    sf.write(narrow, utterance(0, "angry", 8000, 2.0), 8000)
    wide = tmp_path / "wide.wav"
    sf.write(wide, utterance(0, "angry", 16000, 2.0), 16000)
    model = str(trained_run.checkpoint)
    code = main([str(narrow), str(wide), "--model", model, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert (
        len(warned) == 1 and "phone.wav" in warned[0] and "below the model's 16000 Hz" in warned[0]
    )
    records = json.loads(out)
    assert "warnings" in records[0] and "warnings" not in records[1]


@pytest.mark.slow
def test_training_and_predicting_from_a_project_folder_use_its_store(
    cli,
    compose,
    tmp_path: Path,
    data_dir: Path,
    small_corpus: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A project folder of the user's own, outside the repository: runs go to ./mlruns there,
    # and ser-predict finds them there, by id and without --model, and says which it chose.
    from ser.train import train_folds

    project = tmp_path / "my_project"
    project.mkdir()
    monkeypatch.chdir(project)
    # What `python train.py debug=fast ...` composes there: paths.root_dir is the working folder.
    cfg = compose(
        ["debug=fast", f"paths.data_dir={data_dir}", *small_corpus, "callbacks.progress_bar=null"]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(project / "logs" / "run")
    train_folds(cfg)
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ser-synthetic").experiment_id])
    wav = tmp_path / "a.wav"
    sf.write(wav, utterance(0, "angry", 16000, 2.0), 16000)
    capsys.readouterr()

    assert main([str(wav), "--model", run.info.run_id]) == 0
    by_id = capsys.readouterr().out
    # ser-predict's one run as a real command: the store found from the working directory
    default = cli([*PREDICT, str(wav)], cwd=project)
    assert default.returncode == 0, default.stderr
    store = f"sqlite:///{project.resolve() / 'mlruns' / 'mlflow.db'}"
    assert f"model: {run.info.run_id} from the MLflow store {store}" in default.stderr
    assert default.stdout == by_id  # the run it chose is that run
    with pytest.raises(SystemExit) as wrong:
        main([str(wav), "--labels", "calm,tense"])
    assert wrong.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "not the --labels ['calm', 'tense']" in line
    # elsewhere (no store there) it does not silently pick another project's model
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as elsewhere:
        main([str(wav)])
    assert elsewhere.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no --model given and no MLflow store at")

"""The MLflow model registry: the trained model registered as a pyfunc on raw audio, loaded
back through models:/ser@champion, used by ser-predict, and registered by training itself."""

from __future__ import annotations

import filecmp
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from ser.data.voice import synthesize_utterance
from ser.errors import SerError
from ser.inference.recognizer import Recognizer, load_recognizer
from ser.serve.predict import main
from ser.tracking.registry import checkpoint_of_registered_model, default_model, register_model
from ser.train import train


@pytest.fixture(scope="module")
def registered(trained_run) -> int:
    """The session's model registered as ser@champion in its own store (never the repo's)."""
    return register_model(trained_run.run_id, "ser", "champion", trained_run.tracking_uri)


@pytest.fixture
def tracking(trained_run) -> Iterator[str]:
    # pyfunc.load_model resolves models:/ through the global tracking URI; restored after.
    with _use_tracking_uri(trained_run.tracking_uri):
        yield trained_run.tracking_uri


def waveform(seconds: float, rate: int, emotion: str = "happy") -> np.ndarray:
    return synthesize_utterance(3, emotion, 2, rate, min_duration=seconds, max_duration=seconds)


def test_the_pyfunc_on_raw_audio_equals_the_recognizer(
    trained_run, registered: int, tracking: str
) -> None:
    model = mlflow.pyfunc.load_model("models:/ser@champion")
    recognizer = Recognizer.from_checkpoint(trained_run.checkpoint)
    rows = [(waveform(2.2, 22050), 22050), (waveform(1.1, 16000, "sad"), 16000)]
    frame = pd.DataFrame(
        {"audio": [a.tolist() for a, _ in rows], "sample_rate": [r for _, r in rows]}
    )
    out = model.predict(frame)
    assert list(out.columns) == ["label", *recognizer.class_names]
    for (audio, rate), (_, got) in zip(rows, out.iterrows(), strict=True):
        expected = recognizer.predict_array(audio, rate)
        assert got["label"] == expected.label
        probs = got[recognizer.class_names].to_numpy(dtype=float)
        want = np.array([expected.probabilities[c] for c in recognizer.class_names])
        np.testing.assert_allclose(probs, want, atol=1e-5, rtol=0)
    # The MLmodel records who made it and the serving example shows the JSON body.
    info = mlflow.models.get_model_info("models:/ser@champion")
    assert info.metadata["class_names"] == recognizer.class_names
    assert info.run_id == trained_run.run_id
    assert info.signature.inputs.input_names() == ["audio", "sample_rate"]


def test_the_pyfunc_refuses_bad_input_with_the_reason(registered: int, tracking: str) -> None:
    model = mlflow.pyfunc.load_model("models:/ser@champion")
    silent = pd.DataFrame({"audio": [[0.0] * 1600], "sample_rate": [16000]})
    with pytest.raises(MlflowException, match=r"row 0: audio is silent"):
        model.predict(silent)
    with pytest.raises(MlflowException):
        model.predict(pd.DataFrame({"audio": [[0.1, 0.2]]}))  # no sample_rate


def test_the_registered_checkpoint_is_the_runs(trained_run, registered: int) -> None:
    uri = trained_run.tracking_uri
    by_alias = checkpoint_of_registered_model("models:/ser@champion", uri)
    by_version = checkpoint_of_registered_model(f"models:/ser/{registered}", uri)
    assert filecmp.cmp(by_alias, trained_run.checkpoint, shallow=False)
    assert filecmp.cmp(by_version, trained_run.checkpoint, shallow=False)
    with pytest.raises(SerError, match="models:/ser@staging not found in the registry"):
        checkpoint_of_registered_model("models:/ser@staging", uri)
    with pytest.raises(SerError, match="is not models:/<name>@<alias>"):
        checkpoint_of_registered_model("models:/", uri)
    # With an alias registered, it is what ser-predict uses when no --model is given.
    assert default_model(uri) == "models:/ser@champion"


def test_registering_again_adds_a_version_and_moves_the_alias(trained_run, registered: int) -> None:
    uri = trained_run.tracking_uri
    again = register_model(trained_run.run_id, "ser", "champion", uri)
    client = MlflowClient(uri)
    assert again == registered + 1
    assert int(client.get_model_version_by_alias("ser", "champion").version) == again
    # The first version's files were not overwritten: each version has its own folder.
    sources = {client.get_model_version("ser", str(v)).source for v in (registered, again)}
    assert len(sources) == 2
    assert (
        load_recognizer(f"models:/ser/{registered}", uri).class_names
        == load_recognizer(f"models:/ser/{again}", uri).class_names
    )


def test_ser_predict_with_a_registered_model(
    trained_run, registered: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, waveform(1.8, 16000, "angry"), 16000)
    args = ["--model", "models:/ser@champion", "--tracking-uri", trained_run.tracking_uri]
    code = main([str(wav), *args, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (record,) = json.loads(out)
    expected = Recognizer.from_checkpoint(trained_run.checkpoint).predict_file(wav)
    assert record["label"] == expected.label
    for name, p in expected.probabilities.items():
        assert record["probabilities"][name] == pytest.approx(p, abs=1e-4)


def test_training_registers_its_best_checkpoint(make_cfg, tmp_path: Path) -> None:
    train(make_cfg(["debug=fast", "register_model=ser_test"]))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    version = client.get_model_version_by_alias("ser_test", "champion")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    ckpt = checkpoint_of_registered_model("models:/ser_test@champion", client.tracking_uri)
    (logged,) = [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert ckpt.name == Path(logged).name

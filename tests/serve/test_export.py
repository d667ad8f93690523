"""ser-export: TorchScript and ONNX graphs (waveform in, posteriors out) equal the PyTorch
Recognizer on utterances of several lengths; the JSON contract; bad model references."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from ser.data.voice import synthesize_utterance
from ser.inference.recognizer import Recognizer
from ser.preprocess import Preprocessor
from ser.serve.export import main, onnx_session

# Lengths the export never saw (it traces and checks 1.3 s and 2.7 s).
SECONDS = (0.6, 2.0, 4.1)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real command, once for the module."""
    out = tmp_path_factory.mktemp("exported") / "model"
    model = str(trained_run.checkpoint)
    args = ["--model", model, "--format", "both", "--out", str(out)]
    result = run_cli([sys.executable, "-m", "ser.serve.export", *args], cwd=out.parent)
    assert result.returncode == 0, result.stderr
    assert "model.onnx" in result.stdout and "model.torchscript.pt" in result.stdout
    return out


@pytest.fixture(scope="module")
def recognizer(trained_run) -> Recognizer:
    return Recognizer.from_checkpoint(trained_run.checkpoint)


@pytest.fixture(scope="module")
def waves(recognizer: Recognizer) -> list[np.ndarray]:
    """Preprocessed utterances (trimmed, normalised) of different lengths."""
    rate = recognizer.sample_rate
    raw = [
        synthesize_utterance(i, emotion, 3, rate, min_duration=s, max_duration=s)
        for i, (emotion, s) in enumerate(zip(("sad", "angry", "happy"), SECONDS, strict=True))
    ]
    return [recognizer.preprocessor.process(r, rate) for r in raw]


def test_onnx_runtime_equals_pytorch(
    exported: Path, recognizer: Recognizer, waves: list[np.ndarray]
) -> None:
    session = onnx_session(exported / "model.onnx", threads=1)
    (inp,) = session.get_inputs()
    assert inp.name == "waveform"
    assert len({len(w) for w in waves}) == len(waves)  # really different lengths
    for wave in waves:
        got = session.run(None, {"waveform": wave[None]})[0]
        assert got.shape == (1, len(recognizer.class_names))
        assert np.abs(got[0] - recognizer.posteriors(wave)).max() <= 1e-4
    # A batch of equal-length utterances gives each one's posteriors.
    batch = np.stack([waves[1], waves[1][::-1].copy()])
    got = session.run(None, {"waveform": batch})[0]
    want = np.stack([recognizer.posteriors(w) for w in batch])
    assert np.abs(got - want).max() <= 1e-4


def test_torchscript_equals_pytorch(
    exported: Path, recognizer: Recognizer, waves: list[np.ndarray]
) -> None:
    model = torch.jit.load(str(exported / "model.torchscript.pt"))
    for wave in waves:
        with torch.no_grad():
            got = model(torch.from_numpy(wave)[None]).numpy()[0]
        assert np.abs(got - recognizer.posteriors(wave)).max() <= 1e-4


def test_the_json_states_the_contract(exported: Path, recognizer: Recognizer) -> None:
    info = json.loads((exported / "model.json").read_text())
    assert info["class_names"] == recognizer.class_names
    assert info["sample_rate"] == recognizer.sample_rate
    assert info["files"]["onnx"]["input"] == "waveform"
    assert info["files"]["torchscript"]["input"] == "waveform"
    assert info["files"]["onnx"]["max_abs_diff"] <= 1e-4
    assert info["inputs"]["waveform"]["shape"] == ["batch", "samples"]
    assert info["output"]["shape"] == ["batch", len(recognizer.class_names)]
    pre = info["preprocessing"]
    assert pre["outside_the_graph"] is True
    # The config rebuilds the same preprocessing, as the JSON's "python" line says.
    assert Preprocessor(**pre["config"]) == recognizer.preprocessor
    steps = " | ".join(pre["steps"])
    for word in ("mono", f"resample to {recognizer.sample_rate} Hz", "trim", "peak-normalise"):
        assert word in steps
    assert sorted(p.name for p in exported.iterdir()) == [
        "model.json",
        "model.onnx",
        "model.torchscript.pt",
    ]  # no temporary files left behind


def test_a_model_that_is_not_there_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: model '{tmp_path / 'missing.ckpt'}' not found")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        main(["--model", str(not_a_checkpoint), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().err == (
        f"error: {not_a_checkpoint} is not a readable checkpoint (UnpicklingError); "
        "give a .ckpt saved by `python train.py`\n"
    )


@pytest.mark.parametrize("where", ["/proc/nope", "file"])
def test_an_unwritable_out_is_named_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    out = Path(where) if where.startswith("/") else tmp_path / "a_file"
    if where == "file":
        out.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        # the model is missing too: the --out problem is the one reported, not the model's
        main(["--model", str(tmp_path / "missing.ckpt"), "--out", str(out)])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot write to --out {out}") or "is a file" in line
    assert "missing.ckpt" not in line
    if where == "file":
        assert out.read_text() == "keep me"

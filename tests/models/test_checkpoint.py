"""Checkpoints load with weights_only: a trained one does, a pickled object is refused with the
command that converts a trusted file, and the converted file predicts as the original."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.models import load_checkpoint
from ser.models.checkpoint import main as checkpoint_main
from ser.models.module import CONFIG_KEY
from ser.serve.predict import main as predict


def test_a_trained_checkpoint_holds_only_what_weights_only_reads(trained_run) -> None:
    ckpt = torch.load(trained_run.checkpoint, map_location="cpu", weights_only=True)
    assert ckpt[CONFIG_KEY]["model"]["name"] == trained_run.config.model.name
    module, _ = load_checkpoint(trained_run.checkpoint)
    assert module.class_names == list(trained_run.config.dataset.labels)


def _pickled_copy(source: Path, target: Path) -> Path:
    """The trained checkpoint plus one object that only unpickling can rebuild (the kind that
    older ser versions stored, and that an attacker's file would carry)."""
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["optimizer"] = functools.partial(torch.optim.Adam, lr=1e-3)
    torch.save(ckpt, target)
    return target


def test_a_checkpoint_with_a_pickled_object_is_refused_with_one_error_line(
    trained_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unsafe = _pickled_copy(trained_run.checkpoint, tmp_path / "old.ckpt")
    audio = tmp_path / "speech.wav"
    sf.write(audio, np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    with pytest.raises(SystemExit) as exit_info:
        predict(["--model", str(unsafe), str(audio)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {unsafe} holds pickled Python objects")
    assert f"python -m ser.models.checkpoint convert {unsafe} <new.ckpt>" in err[0]


def test_convert_makes_a_trusted_old_checkpoint_load_safely_and_predict_the_same(
    trained_run, tmp_path: Path
) -> None:
    unsafe = _pickled_copy(trained_run.checkpoint, tmp_path / "old.ckpt")
    converted = tmp_path / "new.ckpt"
    checkpoint_main(["convert", str(unsafe), str(converted)])
    torch.load(converted, map_location="cpu", weights_only=True)  # raises if unsafe
    original, _ = load_checkpoint(trained_run.checkpoint)
    again, config = load_checkpoint(converted)
    x = torch.randn(2, 50, original.feature_mean.numel())
    lengths = torch.tensor([50, 31])
    with torch.no_grad():
        assert torch.equal(original(x, lengths), again(x, lengths))
    assert config == original.run_config

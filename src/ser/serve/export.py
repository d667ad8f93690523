"""ser-export: a trained model as TorchScript and/or ONNX, with its feature front-end inside.

    ser-export --model REF --format torchscript|onnx|both --out DIR

The exported graph takes a preprocessed waveform and returns class posteriors:

    waveform (batch, samples) float32 -> features -> normalisation -> net -> softmax
    -> posteriors (batch, classes)

Both axes are dynamic: any number of utterances of equal length, of any length above one
25 ms frame (utterances of different lengths go one at a time; there is no padding mask).
The preprocessing before it (decode, mono, resample, denoise, trim, normalise) is numpy and
librosa code, so it stays outside the graph; `model.json`, written next to the models, lists
those steps, the class names, the sample rate and the input contract. A front-end that does
not export (eGeMAPS is openSMILE, not torch) makes the graph take the features instead
(`input: features`, (batch, frames, dim) float32), as the JSON then says.

Each exported file is checked against the PyTorch model on two utterance lengths before it
is kept; the largest difference is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ser.atomic import atomic_write
from ser.errors import SerError, exit_on_user_error
from ser.features.export_frontends import onnx_frontend
from ser.inference.recognizer import Recognizer, load_recognizer

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
METADATA_FILE = "model.json"
OPSET = 18
# An exported graph must reproduce the PyTorch posteriors to this (float32 rounding only).
TOLERANCE = 1e-4
# Durations (seconds) of the check utterances: the export traces one, the check runs both.
CHECK_DURATIONS = (1.3, 2.7)


class FeatureClassifier(nn.Module):
    """Features (batch, frames, dim) -> posteriors (batch, classes): SERModule.forward with
    every frame real (no padding, so its mask is all ones), then softmax."""

    # Buffers.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, recognizer: Recognizer) -> None:
        super().__init__()
        module = recognizer.module
        self.net = module.net
        self.register_buffer("mean", module.feature_mean.detach().clone())
        self.register_buffer("std", module.feature_std.detach().clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Computed from the input's shape (not a constant), so the time axis stays dynamic.
        lengths = torch.ones(features.shape[0], dtype=torch.long) * features.shape[1]
        x = (features - self.mean) / self.std
        return torch.softmax(self.net(x, lengths), dim=-1)


class WaveformClassifier(nn.Module):
    """Preprocessed waveform (batch, samples) -> posteriors (batch, classes)."""

    def __init__(self, frontend: nn.Module, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.frontend = frontend
        self.classifier = classifier

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.frontend(waveform))


@dataclasses.dataclass
class Candidate:
    """One graph to try: its input kind, module, and the check inputs with reference outputs."""

    kind: str  # "waveform" or "features"
    module: nn.Module
    inputs: list[np.ndarray]  # each (1, ...) float32
    expected: list[np.ndarray]  # each (1, classes)

    @property
    def input_name(self) -> str:
        return self.kind

    @property
    def example(self) -> torch.Tensor:
        # Batch 2: torch.export specialises a dimension of size 1, which would fix the batch.
        return torch.from_numpy(np.repeat(self.inputs[0], 2, axis=0))


def check_waves(recognizer: Recognizer) -> list[np.ndarray]:
    """Preprocessed generated utterances of two lengths (the synthetic corpus's voice)."""
    from ser.data.voice import synthesize_utterance

    rate = recognizer.sample_rate
    waves = []
    for i, seconds in enumerate(CHECK_DURATIONS):
        raw = synthesize_utterance(i, "angry", 0, rate, min_duration=seconds, max_duration=seconds)
        waves.append(recognizer.preprocessor.process(raw, rate, f"<check {seconds} s>"))
    return waves


def candidates(recognizer: Recognizer, frontends: Sequence[nn.Module]) -> list[Candidate]:
    """Waveform input with each front-end in turn, then the features-input fallback."""
    waves = check_waves(recognizer)
    expected = [recognizer.posteriors(w)[None] for w in waves]
    classifier = FeatureClassifier(recognizer).eval()
    found = [
        Candidate(
            "waveform", WaveformClassifier(f, classifier).eval(), [w[None] for w in waves], expected
        )
        for f in dict.fromkeys(frontends)  # each front-end once
    ]
    feats = [recognizer.features(w)[None].numpy() for w in waves]
    found.append(Candidate("features", classifier, feats, expected))
    return found


def _max_diff(run: Callable[[np.ndarray], np.ndarray], candidate: Candidate) -> float:
    diffs = [
        np.abs(run(x) - e).max() for x, e in zip(candidate.inputs, candidate.expected, strict=True)
    ]
    return float(max(diffs))


def _check(run: Callable[[np.ndarray], np.ndarray], candidate: Candidate) -> float:
    diff = _max_diff(run, candidate)
    if not diff <= TOLERANCE:  # also catches NaN
        raise ValueError(f"exported graph differs from PyTorch by {diff:.2g} > {TOLERANCE}")
    return diff


def export_torchscript(candidate: Candidate, path: Path) -> float:
    """Trace the candidate, check it on both lengths, save it; returns the max difference."""
    with warnings.catch_warnings():
        # The tracer warns about Python ints taken from shapes; the length check below is
        # what proves the traced graph follows the input's length.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(candidate.module, candidate.example, check_trace=False)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return traced(torch.from_numpy(x)).numpy()

    diff = _check(run, candidate)
    with atomic_write(path) as tmp:
        torch.jit.save(traced, str(tmp))
    return diff


def _has_lstm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.LSTM) for m in module.modules())


def _onnx_exporters(module: nn.Module) -> list[str]:
    # The torch.export-based exporter (dynamo=True, onnxscript) is torch's default and is tried
    # first. In torch 2.11 it fails on nn.LSTM with a dynamic time axis (the LSTM is unrolled
    # over the example's frames: "PendingUnbackedSymbolNotFound"), so nets with an LSTM go
    # straight to the TorchScript-based exporter (dynamo=False), which maps nn.LSTM to the ONNX
    # LSTM op with a dynamic sequence length. Either way the result is checked numerically.
    return ["torchscript"] if _has_lstm(module) else ["dynamo", "torchscript"]


def _onnx_export_once(candidate: Candidate, path: Path, exporter: str) -> None:
    # torch.onnx logs a warning per missing torchvision op and its progress; the result is
    # checked numerically, so only errors are worth showing.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings, checked below
        if exporter == "dynamo":
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("time")}
            torch.onnx.export(
                candidate.module,
                (candidate.example,),
                str(path),
                dynamo=True,
                input_names=[candidate.input_name],
                output_names=["posteriors"],
                dynamic_shapes=(dims,),
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        else:
            torch.onnx.export(
                candidate.module,
                (candidate.example,),
                str(path),
                dynamo=False,
                input_names=[candidate.input_name],
                output_names=["posteriors"],
                dynamic_axes={candidate.input_name: {0: "batch", 1: "time"}},
                opset_version=OPSET,
            )


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session (intra-op threads as given, else onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(candidate: Candidate, path: Path) -> tuple[str, float]:
    """Export, check in onnxruntime on both lengths, keep; returns (exporter, max difference)."""
    errors = []
    for exporter in _onnx_exporters(candidate.module):
        try:
            with atomic_write(path) as tmp:
                _onnx_export_once(candidate, tmp, exporter)
                diff = _check(_onnx_runner(onnx_session(tmp), candidate.input_name), candidate)
            return exporter, diff
        except Exception as err:  # any exporter failure: the next exporter, or give up
            errors.append(f"{exporter}: {type(err).__name__}: {_first_line(err)}")
    raise ValueError("; ".join(errors))


def _onnx_runner(session: Any, input_name: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: session.run(None, {input_name: x})[0]


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def metadata(recognizer: Recognizer, source: str, files: dict[str, dict]) -> dict:
    """What a consumer of the exported files needs: classes, rate, contract, preprocessing."""
    rate = recognizer.sample_rate
    preprocess = recognizer.config.get("preprocess") or {}
    return {
        "format_version": 1,
        "source": source,
        "class_names": recognizer.class_names,
        "sample_rate": rate,
        "files": files,
        "inputs": {
            "waveform": {
                "shape": ["batch", "samples"],
                "dtype": "float32",
                "description": (
                    f"mono waveform at {rate} Hz after the preprocessing steps below; "
                    "equal lengths within a batch (no padding), at least one 25 ms frame"
                ),
            },
            "features": {
                "shape": ["batch", "frames", recognizer.module.feature_mean.numel()],
                "dtype": "float32",
                "description": "frame features of the preprocessed waveform, from the "
                "extractor in `features` (not normalised: the graph normalises)",
            },
        },
        "output": {
            "name": "posteriors",
            "shape": ["batch", len(recognizer.class_names)],
            "dtype": "float32",
            "description": "softmax class probabilities, in class_names order",
        },
        "preprocessing": {
            "outside_the_graph": True,
            "steps": recognizer.preprocessor.describe(),
            "config": {k: v for k, v in preprocess.items() if k != "_target_"},
            "python": "ser.preprocess.Preprocessor(**config).process(samples, rate)",
        },
        "features": recognizer.feature_config,
    }


def export(
    recognizer: Recognizer, out_dir: str | Path, formats: Sequence[str], source: str = ""
) -> dict:
    """Export to `out_dir` (model.onnx, model.torchscript.pt, model.json); returns the JSON."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SerError(f"--out {out} is a file; give a directory (it is created if missing)")
    files: dict[str, dict] = {}
    if "torchscript" in formats:
        errors = []
        # torchaudio's own front-end first (exact); torchaudio's compute_deltas traces with
        # the example's batch size baked in, so MFCC needs the rewritten front-end.
        frontends = [recognizer.extractor, onnx_frontend(recognizer.extractor)]
        for candidate in candidates(recognizer, frontends):
            try:
                diff = export_torchscript(candidate, out / TORCHSCRIPT_FILE)
            except Exception as err:
                errors.append(f"{candidate.kind} input: {type(err).__name__}: {_first_line(err)}")
                continue
            files["torchscript"] = {
                "file": TORCHSCRIPT_FILE,
                "input": candidate.kind,
                "load": f"torch.jit.load('{TORCHSCRIPT_FILE}')",
                "max_abs_diff": diff,
                # Why the front-end is not inside (the features input is the fallback).
                **({"waveform_error": errors[0]} if candidate.kind == "features" else {}),
            }
            break
        else:
            raise SerError(f"cannot export this model to TorchScript ({'; '.join(errors)})")
    if "onnx" in formats:
        errors = []
        for candidate in candidates(recognizer, [onnx_frontend(recognizer.extractor)]):
            try:
                exporter, diff = export_onnx(candidate, out / ONNX_FILE)
            except Exception as err:
                errors.append(f"{candidate.kind} input: {_first_line(err)}")
                continue
            files["onnx"] = {
                "file": ONNX_FILE,
                "input": candidate.kind,
                "input_name": candidate.input_name,
                "output_name": "posteriors",
                "exporter": f"torch.onnx.export(dynamo={exporter == 'dynamo'})",
                "opset": OPSET,
                "max_abs_diff": diff,
                **({"waveform_error": errors[0]} if candidate.kind == "features" else {}),
            }
            break
        else:
            raise SerError(f"cannot export this model to ONNX ({'; '.join(errors)})")
    info = metadata(recognizer, source, files)
    with atomic_write(out / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-export",
        description="Export a trained model (front-end, normalisation, net, softmax) to "
        "TorchScript and/or ONNX, with model.json describing classes, sample rate, input "
        "and the preprocessing to apply before (it stays outside the graph).",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="a .ckpt path, an MLflow run id, or models:/<name>@<alias> | models:/<name>/<n>",
    )
    parser.add_argument("--format", choices=["torchscript", "onnx", "both"], default="both")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output directory (created)"
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store for run ids and models:/ refs "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///$SER_ROOT/mlruns/mlflow.db, where "
        "training writes; $SER_ROOT defaults to the working directory)",
    )
    return parser


def check_writable(folder: Path) -> None:
    """Whether a file can be written in `folder` (created for the probe, then removed again if
    it was not there), or one SerError naming it. Root passes os.access checks, so it writes."""
    if folder.is_file():
        raise SerError(f"--out {folder} is a file; give a directory (it is created if missing)")
    created = next((p for p in [*reversed(folder.absolute().parents), folder.absolute()]
                    if not p.exists()), None)  # fmt: skip
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ser-probe-"):
            pass
    except OSError as err:
        raise SerError(
            f"cannot write to --out {folder} ({err.strerror}); give a folder you can write to"
        ) from None
    if created is not None:
        shutil.rmtree(created)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `ser-export`."""
    args = build_parser().parse_args(argv)
    check_writable(args.out)  # before the model loads and exports: an --out typo is not its fault
    # MLflow's download progress bars are noise for a model of a few MB.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    recognizer = load_recognizer(args.model, args.tracking_uri)
    formats = ["torchscript", "onnx"] if args.format == "both" else [args.format]
    info = export(recognizer, args.out, formats, source=str(args.model))
    for name, entry in info["files"].items():
        extra = f", {entry['exporter']}" if "exporter" in entry else ""
        print(
            f"wrote {args.out / entry['file']} ({name}, {entry['input']} input{extra}; "
            f"max |diff| vs PyTorch {entry['max_abs_diff']:.1e})"
        )
        if "waveform_error" in entry:
            print(
                f"note: {type(recognizer.extractor).__name__} does not export into {name} "
                f"({entry['waveform_error']}); this file takes its features, not audio",
                file=sys.stderr,
            )
    print(f"wrote {args.out / METADATA_FILE} (classes, sample rate, input, preprocessing)")


if __name__ == "__main__":
    main()

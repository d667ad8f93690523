"""The MLflow model registry: a trained model as an `mlflow.pyfunc` model that takes raw audio.

`register_model(run_id)` logs the run's checkpoint, wrapped in `SERPyfunc`, into that run
under the artifact path `model`, registers it as a new version of `ser` and points the alias
`champion` at it. The checkpoint carries the run's config, so the preprocessing and features
travel with it. Then `mlflow.pyfunc.load_model("models:/ser@champion")`, or

    mlflow models serve -m models:/ser@champion --env-manager local -p 5055

serves it. The serving environment must have `ser` installed (this repository); the model's
requirements list its dependencies, not `ser` itself, which is not on PyPI.

Input contract (`SERPyfunc.predict`): a pandas DataFrame, one row per utterance, with columns

    audio        list of float samples in [-1, 1], mono (raw, not preprocessed)
    sample_rate  int, the samples' rate in Hz (resampled to the model's rate inside)

which is what `mlflow models serve` builds from the JSON body
`{"dataframe_records": [{"audio": [0.0, 0.01, ...], "sample_rate": 16000}]}`.
Output: a DataFrame with `label` and one probability column per class (class-name order).
An unusable row (silent, too short, NaN) fails the whole call with its row number and reason.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from ser.errors import SerError

ARTIFACT_PATH = "model"
CHECKPOINT_KEY = "checkpoint"
MODELS_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
# What the pyfunc model needs besides `ser` itself (pinned to the versions that logged it).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "torchaudio",
    "pytorch-lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "librosa",
    "soundfile",
    "numpy",
    "pandas",
)


class SERPyfunc(PythonModel):
    """mlflow.pyfunc model: raw audio rows in, label and class probabilities out."""

    def load_context(self, context: Any) -> None:
        from ser.serve.model import Recognizer

        self.recognizer = Recognizer.from_checkpoint(context.artifacts[CHECKPOINT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        frame = pd.DataFrame(model_input)
        missing = {"audio", "sample_rate"} - set(frame.columns)
        if missing:
            raise MlflowException.invalid_parameter_value(
                f"input needs the columns audio (list of float samples) and sample_rate (Hz); "
                f"missing {sorted(missing)}"
            )
        names = self.recognizer.class_names
        rows = []
        for i, (audio, rate) in enumerate(zip(frame["audio"], frame["sample_rate"], strict=True)):
            samples = np.asarray(audio, dtype=np.float32)
            try:
                pred = self.recognizer.predict_array(samples, int(rate), f"row {i}")
            except SerError as err:
                raise MlflowException.invalid_parameter_value(str(err)) from None
            rows.append({"label": pred.label, **{c: pred.probabilities[c] for c in names}})
        return pd.DataFrame(rows, columns=["label", *names])


def signature(class_names: list[str]) -> Any:
    """Input: audio (array of doubles), sample_rate (long). Output: label, one double per class."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema(
        [ColSpec(Array(DataType.double), "audio"), ColSpec(DataType.long, "sample_rate")]
    )
    outputs = Schema(
        [ColSpec(DataType.string, "label"), *(ColSpec(DataType.double, c) for c in class_names)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(sample_rate: int = 16000) -> pd.DataFrame:
    """50 ms of a 220 Hz tone: a valid input, stored with the model to show the JSON format."""
    t = np.arange(int(0.05 * sample_rate)) / sample_rate
    audio = np.round(0.5 * np.sin(2 * np.pi * 220.0 * t), 4)
    return pd.DataFrame({"audio": [audio.tolist()], "sample_rate": [sample_rate]})


# The pyfunc model is saved as code (MLflow "models from code"), not as a pickled object: the
# model directory holds this file, which builds the model from the installed `ser` package.
MODEL_CODE = """\
from mlflow.models import set_model

from ser.serve.registry import SERPyfunc

set_model(SERPyfunc())
"""


def requirements() -> list[str]:
    pins = []
    for package in REQUIREMENTS:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    from ser.tracking.mlflow import tracking_uri as default_uri

    return MlflowClient(default_uri(tracking_uri))


def _free_artifact_path(client: Any, run_id: str) -> str:
    """`model`, or `model-2`, `model-3`, ... when the run already holds registered models
    (overwriting `model` would change the versions that point at it)."""
    taken = {f.path for f in client.list_artifacts(run_id)}
    path, n = ARTIFACT_PATH, 1
    while path in taken:
        n += 1
        path = f"{ARTIFACT_PATH}-{n}"
    return path


def register_model(
    run_id: str,
    name: str = "ser",
    alias: str | None = "champion",
    tracking_uri: str | None = None,
    checkpoint: str | Path | None = None,
) -> int:
    """Log the run's checkpoint as a pyfunc model into the run (artifact path `model`, or
    `model-2`, ... if taken), register it under `name` and point `alias` at the new version;
    returns the version number.

    `checkpoint` is the .ckpt to wrap; by default the run's `checkpoints/` artifact.
    `tracking_uri` defaults to $MLFLOW_TRACKING_URI, else the sqlite store of
    `ser.tracking.mlflow.default_mlruns_dir()`.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from ser.serve.model import Recognizer, _checkpoint_of_run

    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise SerError(
            f"MLflow run {run_id} not found in {client.tracking_uri} ({err.error_code}); "
            "check the run id or the tracking URI"
        ) from None
    if checkpoint is None:
        checkpoint = _checkpoint_of_run(run_id, client.tracking_uri)
    recognizer = Recognizer.from_checkpoint(checkpoint)  # fails early on a non-ser file
    with tempfile.TemporaryDirectory(prefix="ser-pyfunc-") as tmp:
        local = Path(tmp) / ARTIFACT_PATH
        artifact_path = _free_artifact_path(client, run_id)
        code = Path(tmp) / "ser_pyfunc.py"
        code.write_text(MODEL_CODE)
        # save_model + log_artifacts (rather than mlflow.pyfunc.log_model) logs into the given
        # run through this client, without the global tracking URI or active-run state, so it
        # also works from inside training, while the run is still open.
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=str(code),
            mlflow_model=Model(run_id=run_id, artifact_path=artifact_path),
            artifacts={CHECKPOINT_KEY: str(checkpoint)},
            signature=signature(recognizer.class_names),
            input_example=input_example(recognizer.sample_rate),
            pip_requirements=requirements(),
            metadata={"class_names": recognizer.class_names, "run_id": run_id},
        )
        # Saving imports the model code, which leaves a __pycache__ in the model folder.
        shutil.rmtree(local / "__pycache__", ignore_errors=True)
        client.log_artifacts(run_id, str(local), artifact_path)
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = client.create_model_version(name, source, run_id=run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def checkpoint_of_registered_model(ref: str, tracking_uri: str | None = None) -> Path:
    """The checkpoint inside a registered pyfunc model, `models:/<name>@<alias>` or
    `models:/<name>/<version>`, downloaded to a temporary folder."""
    from mlflow.exceptions import MlflowException

    match = MODELS_REF.match(ref)
    if match is None:
        raise SerError(
            f"model reference {ref!r} is not models:/<name>@<alias> or models:/<name>/<version>"
        )
    client = _client(tracking_uri)
    name, alias, number = match["name"], match["alias"], match["version"]
    try:
        if alias is not None:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, number)
    except MlflowException:
        raise SerError(
            f"{ref} not found in the registry of {client.tracking_uri}; register a model with "
            "`python train.py register_model=ser` or set --tracking-uri / MLFLOW_TRACKING_URI"
        ) from None
    import mlflow.artifacts

    uri = client.get_model_version_download_uri(name, version.version)
    target = Path(tempfile.mkdtemp(prefix="ser-model-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    ckpts = sorted(local.glob("artifacts/*.ckpt"))
    if not ckpts:
        raise SerError(f"{ref} (version {version.version}) has no ser checkpoint; not a ser model")
    return ckpts[0]

"""MLflow's model store: a run's checkpoint, a registered model's checkpoint, the newest
usable model, and registration of a trained model as an `mlflow.pyfunc` model that takes raw
audio (the model class itself is `ser.inference.pyfunc.SERPyfunc`).

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
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser.errors import SerError
from ser.tracking.mlflow import tracking_uri as resolve_tracking_uri

ARTIFACT_PATH = "model"
CHECKPOINT_KEY = "checkpoint"
# A pretrained encoder's folder copied into a registered model (register_model(bundle_encoder)):
# the pyfunc's artifacts/encoder, which loading uses in place of the folder the run named.
ENCODER_ARTIFACT = "encoder"
# What ser-predict uses when no --model is given, and how far back it looks for a run.
DEFAULT_NAME, DEFAULT_ALIAS = "ser", "champion"
RECENT_RUNS = 50
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

from ser.inference.pyfunc import SERPyfunc

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


def mlflow_client(tracking_uri: str | None = None, create: bool = True) -> Any:
    """An MlflowClient on `tracking_uri`, else the default store (`ser.tracking.mlflow`)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(resolve_tracking_uri(tracking_uri, create=create))


def checkpoint_of_run(run_id: str, tracking_uri: str | None = None) -> Path:
    """The `.ckpt` in a run's `checkpoints/` artifact, downloaded to a temporary folder."""
    from mlflow.exceptions import MlflowException

    store = mlflow_client(tracking_uri, create=False)
    try:
        files = [f.path for f in store.list_artifacts(run_id, "checkpoints")]
    except MlflowException as err:
        raise SerError(
            f"MLflow run {run_id} not found in {store.tracking_uri} ({err.error_code}); "
            "check the run id or set MLFLOW_TRACKING_URI"
        ) from None
    ckpts = [f for f in files if f.endswith(".ckpt")]
    if not ckpts:
        raise SerError(
            f"MLflow run {run_id} has no checkpoint artifact; is it a neural model's run?"
        )
    target = Path(tempfile.mkdtemp(prefix="ser-run-"))
    return Path(store.download_artifacts(run_id, ckpts[0], str(target)))


def default_model(tracking_uri: str | None = None) -> str:
    """models:/ser@champion if registered, else the newest FINISHED run with a checkpoint, in
    the store training writes to (`ser.tracking.mlflow.tracking_uri`)."""
    from mlflow.exceptions import MlflowException

    hint = (
        "pass --model PATH.ckpt | RUN_ID | models:/ser@champion, or train one with "
        "`python train.py`"
    )
    uri = resolve_tracking_uri(tracking_uri, create=False)
    db = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(db).is_file():
        # do not create an empty store just to look into it
        raise SerError(f"no --model given and no MLflow store at {db}; {hint}")
    store = mlflow_client(uri)
    try:
        store.get_model_version_by_alias(DEFAULT_NAME, DEFAULT_ALIAS)
        return f"models:/{DEFAULT_NAME}@{DEFAULT_ALIAS}"
    except MlflowException:
        pass  # no such registered model or alias
    try:
        experiments = [e.experiment_id for e in store.search_experiments()]
        runs = store.search_runs(
            experiments,
            filter_string="attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=RECENT_RUNS,
        )
    except MlflowException as err:
        raise SerError(f"cannot read the MLflow store {uri} ({err.error_code}); {hint}") from None
    for run in runs:
        files = store.list_artifacts(run.info.run_id, "checkpoints")
        if any(f.path.endswith(".ckpt") for f in files):
            return run.info.run_id
    raise SerError(f"no --model given and no finished run with a checkpoint in {uri}; {hint}")


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
    bundle_encoder: bool = False,
) -> int:
    """Log the run's checkpoint as a pyfunc model into the run (artifact path `model`, or
    `model-2`, ... if taken), register it under `name` and point `alias` at the new version;
    returns the version number.

    `checkpoint` is the .ckpt to wrap; by default the run's `checkpoints/` artifact. A model on
    a pretrained encoder records the encoder's folder (or hub id), not its weights; with
    `bundle_encoder` a copy of that folder goes into the registered model too, so that it
    loads where the folder is not (another machine, a serving container).
    `tracking_uri` defaults to $MLFLOW_TRACKING_URI, else the sqlite store of
    `ser.project.default_mlruns_dir()`.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from ser.models.module import load_checkpoint

    client = mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise SerError(
            f"MLflow run {run_id} not found in {client.tracking_uri} ({err.error_code}); "
            "check the run id or the tracking URI"
        ) from None
    if checkpoint is None:
        checkpoint = checkpoint_of_run(run_id, client.tracking_uri)
    module, config = load_checkpoint(checkpoint)  # fails early on a non-ser file
    class_names, sample_rate = list(module.class_names), int(config["preprocess"]["sample_rate"])
    artifacts = {CHECKPOINT_KEY: str(checkpoint)}
    with tempfile.TemporaryDirectory(prefix="ser-pyfunc-") as tmp:
        if bundle_encoder:
            # Named `encoder` in the model folder (MLflow keeps an artifact's base name).
            staged = Path(tmp) / ENCODER_ARTIFACT
            _link_or_copy_tree(Path(_encoder_folder(config)), staged)
            artifacts[ENCODER_ARTIFACT] = str(staged)
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
            artifacts=artifacts,
            signature=signature(class_names),
            input_example=input_example(sample_rate),
            pip_requirements=requirements(),
            metadata={"class_names": class_names, "run_id": run_id},
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


def _link_or_copy_tree(source: Path, target: Path) -> None:
    """`source` at `target` as hard links where the file system allows (a large encoder's
    weights are not copied twice on the way into the model), else as a copy."""
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def _encoder_folder(config: dict) -> str:
    """The local folder of the run's pretrained encoder, to bundle with a registered model."""
    from ser.models.module import encoder_of

    found = encoder_of(config)
    if found is None:
        raise SerError("this model uses no pretrained encoder; register it without bundle_encoder")
    key, name = found
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise SerError(
            f"{key}={name} is not a local folder, so there is nothing to bundle; get it with "
            f"`hf download {name} --local-dir DIR`, retrain with {key}=DIR, or register "
            "without bundling"
        )
    return str(folder)


def checkpoint_of_registered_model(ref: str, tracking_uri: str | None = None) -> Path:
    """The checkpoint inside a registered pyfunc model, `models:/<name>@<alias>` or
    `models:/<name>/<version>`, downloaded to a temporary folder."""
    from mlflow.exceptions import MlflowException

    match = MODELS_REF.match(ref)
    if match is None:
        raise SerError(
            f"model reference {ref!r} is not models:/<name>@<alias> or models:/<name>/<version>"
        )
    client = mlflow_client(tracking_uri)
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

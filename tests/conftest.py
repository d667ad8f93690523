"""Shared fixtures: configs composed with the Hydra compose API, a small synthetic corpus
generated once per session, and a temporary MLflow store per test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, open_dict

from ser.project import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
# A small corpus keeps tests fast: 8 speakers x 4 emotions x 4 utterances.
SMALL_CORPUS = ["dataset.loader.utterances_per_emotion=4"]

ComposeFn = Callable[..., DictConfig]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory (corpora and feature cache) shared by the whole session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never log test runs to a server the developer happens to have configured.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def compose_config(
    overrides: list[str] | None = None, config_name: str = "train", hydra: bool = False
) -> DictConfig:
    """Compose conf/<config_name>.yaml with overrides, as `python train.py ...` would."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides or [], return_hydra_config=hydra)


@pytest.fixture
def make_cfg(tmp_path: Path, data_dir: Path) -> ComposeFn:
    """Compose a run config whose outputs and MLflow store live in tmp_path."""

    def make(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
        cfg = compose_config(
            [
                f"paths.root_dir={tmp_path}",
                f"paths.data_dir={data_dir}",
                # the small synthetic corpus, unless the test picks another dataset
                *([] if any(o.startswith("dataset=") for o in overrides or []) else SMALL_CORPUS),
                "callbacks.progress_bar=null",
                *(overrides or []),
            ],
            config_name,
        )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "output")
        return cfg

    return make


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_process(
    command: list[str], port: int, cwd: Path, env: dict[str, str], timeout_s: float
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real server process on `port` of 127.0.0.1: its base URL (and the process) once
    /health answers (within timeout_s), stopped (SIGTERM, then SIGKILL) on exit."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    # Its output goes to a file: a pipe nobody reads fills up and blocks the server. A session
    # of its own: `mlflow server` serves from a child process (uvicorn), which stopping the
    # parent alone would leave running.
    with tempfile.TemporaryFile("w+") as output:
        server = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if server.poll() is not None:
                    output.seek(0)
                    raise AssertionError(f"the server exited: {output.read()[-3000:]}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"no server within {timeout_s} s"
                time.sleep(0.5)
            yield base, server
        finally:
            stop_process_group(server)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to a process started with start_new_session and its children, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def ser_server(
    model: str | Path, cwd: Path, timeout_s: float = 120, tracking_uri: str | None = None
) -> Iterator[str]:
    """A real `ser-serve` process for `model` (a checkpoint, or a models:/ reference in the
    store at `tracking_uri`) on a free port of 127.0.0.1: its base URL once it answers."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [sys.executable, "-m", "ser.serve.http", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(port), "--timeout-s", "120"]  # fmt: skip
    with http_process(command, port, cwd, env, timeout_s) as (base, _):
        yield base


@contextlib.contextmanager
def mlflow_server(folder: Path, timeout_s: float = 120) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `mlflow server` on a free port of 127.0.0.1 (SQLite backend, artifacts proxied
    into `folder`/artifacts): its URL and process, stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts")]  # fmt: skip
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Its job runner (seven worker processes, for GenAI scorers) is not needed here.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with http_process(command, port, folder, env, timeout_s) as server:
        yield server


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a real command line (python -m ..., train.py, dvc) and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full_env.pop("MLFLOW_TRACKING_URI", None)  # unless `env` sets it
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def small_corpus() -> list[str]:
    return list(SMALL_CORPUS)


@pytest.fixture
def compose() -> ComposeFn:
    """compose_config, for tests that compose without the tmp-path defaults of make_cfg."""
    return compose_config


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def train_args(tmp_path: Path, data_dir: Path) -> Callable[..., list[str]]:
    """The real `python train.py ...` command line on the small corpus, logging into tmp_path."""

    def args(*overrides: str) -> list[str]:
        return [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            *overrides,
            f"paths.root_dir={tmp_path}",
            f"paths.data_dir={data_dir}",
            *SMALL_CORPUS,
            "callbacks.progress_bar=null",
        ]

    return args


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@dataclass(frozen=True)
class TrainedRun:
    """A small model trained once per session: its checkpoint, MLflow store and run id."""

    checkpoint: Path
    mlruns_dir: Path
    run_id: str
    config: DictConfig

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"


def train_small_model(root: Path, data_dir: Path, overrides: list[str]) -> TrainedRun:
    """Train on the small synthetic corpus (a few epochs) and keep the best checkpoint."""
    from ser.train import train

    cfg = compose_config(
        [
            f"paths.root_dir={root}",
            f"paths.data_dir={data_dir}",
            *SMALL_CORPUS,
            "callbacks.progress_bar=null",
            "trainer.max_epochs=4",
            f"save_checkpoint={root / 'model.ckpt'}",
            *overrides,
        ]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "output")
    train(cfg)
    from mlflow.tracking import MlflowClient

    mlruns = root / "mlruns"
    client = MlflowClient(f"sqlite:///{mlruns / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])
    return TrainedRun(root / "model.ckpt", mlruns, run.info.run_id, cfg)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """The default model (cnn_lstm on logmel), trained once for the tests that use a model."""
    return train_small_model(tmp_path_factory.mktemp("trained"), data_dir, [])


@pytest.fixture(scope="session")
def causal_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """A streaming classifier (cnn_lstm, model.causal=true), trained once for the RL tests."""
    return train_small_model(tmp_path_factory.mktemp("causal"), data_dir, ["model.causal=true"])


# Speech encoders generated from the real transformers classes (no hub, no download): saved
# with save_pretrained and loaded through the path a hub model takes.
WAV2VEC_STYLE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    # Strides 5 * 4 * 4 * 4 = 320 samples a frame, as in the real models (20 ms at 16 kHz).
    "conv_dim": (32, 32, 32, 32),
    "conv_kernel": (10, 8, 8, 8),
    "conv_stride": (5, 4, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
# Family -> the transformers config and model classes (imported when a test asks for one).
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
}


def generate_encoder(family: str, folder: Path, seed: int = 0, layer_norm: bool = False) -> Path:
    """A 2-layer, 32-wide encoder of the family with its feature extractor, in `folder`: a
    group-norm conv front-end as in the base models, or with `layer_norm` a per-frame one as in
    the large ones (wav2vec2-large-lv60, hubert-large), whose padded batches are masked."""
    import transformers

    torch.manual_seed(seed)
    if family == "whisper":
        config = transformers.WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=100,
            max_target_positions=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        transformers.WhisperModel(config).save_pretrained(folder)
        transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    else:
        config_name, model_name = FAMILIES[family]
        config_class = getattr(transformers, config_name)
        norm = {"feat_extract_norm": "layer", "do_stable_layer_norm": True} if layer_norm else {}
        model = getattr(transformers, model_name)(config_class(**WAV2VEC_STYLE, **norm))
        model.save_pretrained(folder)
        transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=True
        ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small generated encoder per family, for features=ssl and model=ssl_finetune."""
    root = tmp_path_factory.mktemp("encoders")
    return {f: generate_encoder(f, root / f) for f in [*FAMILIES, "whisper"]}


@pytest.fixture
def make_encoder() -> Callable[..., Path]:
    return generate_encoder

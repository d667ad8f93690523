"""Every option of every config group composes and instantiates (Hydra compose API)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from ser.augment import build as build_augmentation
from ser.data.manifest import PROTOCOL_SETTINGS
from ser.models.classical import ClassicalModel
from ser.models.module import SERModule
from ser.preprocess import Preprocessor
from ser.project import CONFIG_DIR
from ser.train import build_model

ComposeFn = Callable[..., DictConfig]

CONF = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert names, f"config group {group} has no options"
    return names


def target_name(settings: DictConfig) -> str:
    return settings._target_.rsplit(".", 1)[-1]


class FakeData:
    """What build_model reads from a datamodule (sizes, labels, training statistics, the
    training speakers), without a corpus to extract."""

    def __init__(self, cfg: DictConfig) -> None:
        self.extractor = instantiate(cfg.features.extractor)
        self.feature_dim = self.extractor.dim
        self.labels = list(cfg.dataset.labels)
        self.num_classes = len(self.labels)
        self.manifest = pd.DataFrame(
            {"speaker": ["s2", "s1", "s3"], "split": ["train"] * 2 + ["test"]}
        )

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((self.feature_dim,), 0.5), torch.full((self.feature_dim,), 2.0)

    def class_weights(self) -> torch.Tensor:
        return torch.linspace(0.5, 1.5, self.num_classes)


def classical_model(cfg: DictConfig) -> ClassicalModel:
    """train.build_model on a classical model config: the estimator it names, as configured."""
    model = build_model(cfg, None)  # a classical model reads nothing from the data
    assert isinstance(model, ClassicalModel)
    settings = cfg.model.estimator
    assert type(model.estimator).__name__ == target_name(settings)
    params = model.estimator.get_params()
    for key, value in settings.items():
        if key != "_target_":
            assert params[key] == value, key
    assert model.functionals.stats == tuple(cfg.model.stats)
    return model


def check_neural_model(cfg: DictConfig) -> SERModule:
    """train.build_model on a net config: the net sized by the data, its settings and the
    optimizer as configured, the data's statistics and speakers kept."""
    data = FakeData(cfg)
    module = build_model(cfg, data)
    assert isinstance(module, SERModule)
    assert module.class_names == data.labels
    torch.testing.assert_close(module.class_weights, data.class_weights())
    torch.testing.assert_close(module.feature_std, data.feature_stats()[1])
    assert module.train_speakers == ["s1", "s2"]
    assert module.run_config["model"]["name"] == cfg.model.name
    assert getattr(module.net, "causal", False) == cfg.model.get("causal", False)
    x = data.extractor(torch.randn(2, 12000))
    # A padded batch; pooled layers of an encoder (ssl_layers) are never padded.
    short = x.shape[1] if cfg.model.name == "ssl_layers" else max(1, x.shape[1] // 2)
    logits = module(x, torch.tensor([x.shape[1], short]))
    assert logits.shape == (2, data.num_classes)
    optimizer = module.optimizer_factory(module.parameters())
    assert type(optimizer).__name__ == target_name(cfg.model.optimizer)
    assert optimizer.defaults["lr"] == cfg.model.optimizer.lr
    assert optimizer.defaults["weight_decay"] == cfg.model.optimizer.weight_decay
    return module


def test_every_group_of_the_defaults_list_exists() -> None:
    defaults = OmegaConf.load(CONF / "train.yaml").defaults
    groups = [next(iter(d)) for d in defaults if isinstance(d, dict | type(defaults[1]))]
    for group in groups:
        assert (CONF / group).is_dir(), group


@pytest.mark.parametrize("option", options("preprocess"))
def test_preprocess(option: str, compose: ComposeFn) -> None:
    pre = instantiate(compose([f"preprocess={option}"]).preprocess)
    assert isinstance(pre, Preprocessor)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 8000).astype(np.float32)
    out = pre.process(tone, 8000)
    assert out.dtype == np.float32
    assert abs(len(out) - 2 * len(tone)) <= 2  # resampled 8 kHz -> 16 kHz


@pytest.mark.parametrize("option", options("augmentation"))
def test_augmentation(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"augmentation={option}"])
    assert cfg.augmentation.name == option
    waveform, spec = build_augmentation(cfg.augmentation)
    if option in ("none", "speed_copies"):  # no on-the-fly stage
        assert waveform is None and spec is None
        return
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    out = waveform(samples=wave, sample_rate=16000)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    if spec is not None:
        feats = torch.randn(100, 40)
        assert spec(feats).shape == feats.shape


# Options that need more than their name: a pretrained encoder's folder (a generated one here).
def needs(group: str, option: str, encoder: Path) -> list[str]:
    if group == "features" and option == "ssl":
        return [f"features.extractor.model={encoder}"]
    if group == "model" and option == "ssl_finetune":
        return [f"model.net.model={encoder}"]
    return []


# Models that take one kind of input only, and that input's only models.
TAKES = {"ssl_finetune": {"waveform"}, "ssl_layers": {"ssl"}}


def compatible(model: str, features: str) -> bool:
    if model in TAKES:
        return features in TAKES[model]
    return features != "waveform"  # raw samples: a net with its own front-end


@pytest.mark.parametrize("option", options("features"))
def test_features(option: str, compose: ComposeFn, encoders: dict[str, Path]) -> None:
    cfg = compose([f"features={option}", *needs("features", option, encoders["wav2vec2"])])
    extractor = instantiate(cfg.features.extractor)
    frames = extractor(torch.randn(16000))
    assert frames.ndim == 2
    assert frames.shape[1] == extractor.dim  # models read their input size from here
    if extractor.hop_length is None:  # utterance functionals: one frame per utterance
        assert frames.shape[0] == 1
        return
    # 1 s of audio gives about one frame per hop (centred or not, edge frames dropped or not)
    expected = 16000 / extractor.hop_length
    assert abs(frames.shape[0] - expected) <= max(3, 0.05 * expected)


@pytest.mark.parametrize(
    ("option", "features"),
    [(m, f) for m in options("model") for f in options("features") if compatible(m, f)],
)
def test_model(option: str, features: str, compose: ComposeFn, encoders: dict[str, Path]) -> None:
    encoder = encoders["wav2vec2"]
    overrides = [*needs("model", option, encoder), *needs("features", features, encoder)]
    if option == "ssl_layers":
        overrides.append("features.extractor.output=layers")
    cfg = compose([f"model={option}", f"features={features}", "paths.output_dir=o", *overrides])
    if "net" not in cfg.model:  # a classical model: an sklearn estimator on functionals
        classical_model(cfg)
        return
    check_neural_model(cfg)


@pytest.mark.parametrize("option", options("protocol"))
def test_protocol(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"protocol={option}"])
    protocol = {k: v for k, v in cfg.protocol.items() if k not in PROTOCOL_SETTINGS}
    split = instantiate(protocol)
    corpus = pd.DataFrame(
        {
            "path": [f"{i}.wav" for i in range(80)],
            "speaker": [f"s{i % 8}" for i in range(80)],
            "label": ["a", "b"] * 40,
            "session": [f"S{i % 8 // 2}" for i in range(80)],
        }
    )
    if "test_dataset" in cfg.protocol:  # cross_corpus: the second corpus is all test
        out = split(corpus, corpus.assign(path="other_" + corpus["path"]))
        assert set(out.loc[out["split"] == "test", "path"].str[:6]) == {"other_"}
    else:
        out = split(corpus)
    for fold in out if isinstance(out, list) else [out]:
        assert set(fold["split"]) == {"train", "val", "test"}
        independent = (fold.groupby("speaker")["split"].nunique() == 1).all()
        assert independent == cfg.protocol.get("speaker_independent", True)


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"dataset={option}"])
    assert cfg.dataset.name == option
    assert callable(get_method(cfg.dataset.loader._target_))
    # Loaders run on fixtures in tests/data; folder and csv make the user name the labels.
    if not OmegaConf.is_missing(cfg.dataset, "labels"):
        assert len(cfg.dataset.labels) >= 4


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer(option: str, tmp_path: Path, compose: ComposeFn) -> None:
    cfg = compose([f"trainer={option}", f"paths.output_dir={tmp_path}"])
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(Exception, match=r"(?i)gpu|cuda"):
            instantiate(cfg.trainer)
        return
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if option == "ddp":
        assert "ddp" in type(trainer.strategy).__name__.lower()


@pytest.mark.parametrize("option", options("logger"))
def test_logger(option: str, tmp_path: Path, compose: ComposeFn) -> None:
    from ser.tracking import mlflow_logger

    cfg = compose([f"logger={option}", f"paths.root_dir={tmp_path}", "paths.output_dir=o"])
    for name, settings in cfg.logger.items():
        if name == "mlflow":
            logger = mlflow_logger(
                OmegaConf.to_container(settings, resolve=True), cfg.paths.mlruns_dir, {"t": "1"}
            )
            assert logger._tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
            run = logger.experiment.get_run(logger.run_id)
            assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
        else:
            logger = instantiate(settings)
            assert type(logger).__name__ == target_name(settings)
            assert logger.save_dir == cfg.paths.output_dir and logger.name == settings.name


@pytest.mark.parametrize("option", options("callbacks"))
def test_callbacks(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"callbacks={option}", "paths.output_dir=o"])
    for settings in (cfg.callbacks or {}).values():
        callback = instantiate(settings)
        assert type(callback).__name__ == target_name(settings)
        # each setting the callback keeps as an attribute is the configured one
        for key, value in settings.items():
            if key == "dirpath":  # Lightning keeps it absolute
                assert Path(callback.dirpath) == Path(value).resolve()
            elif not key.startswith("_") and hasattr(callback, key):
                assert getattr(callback, key) == value, key


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"experiment={option}", "paths.output_dir=o"])
    if "net" not in cfg.model:  # a classical model
        classical_model(cfg)
        return
    check_neural_model(cfg)


@pytest.mark.parametrize("option", options("debug"))
def test_debug(option: str, compose: ComposeFn) -> None:
    cfg = compose([f"debug={option}"])
    assert cfg.task_name == "debug"
    assert cfg.trainer.get("fast_dev_run") or cfg.trainer.max_epochs <= 40


@pytest.mark.parametrize("option", options("hparams_search"))
def test_hparams_search(option: str, compose: ComposeFn) -> None:
    # A sweep named like an experiment tunes it (`experiment=X hparams_search=X`).
    base = [f"experiment={option}"] if option in options("experiment") else []
    cfg = compose([*base, f"hparams_search={option}"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize"
    assert cfg.optimized_metric.startswith("val/")  # never tune on the test speakers
    for key, space in sweeper.params.items():
        assert OmegaConf.select(cfg, key) is not None, f"{key} is not a config key"
        if (CONF / key).is_dir():  # a config group: every choice must be one of its options
            choices = space.removeprefix("choice(").removesuffix(")").split(",")
            assert {c.strip() for c in choices} <= set(options(key)), space
    # the configured sampler, seeded: two of them suggest the same first trials
    sampler = instantiate(sweeper.sampler)
    assert type(sampler).__name__ == target_name(sweeper.sampler)
    first = [suggest(instantiate(sweeper.sampler)) for _ in range(2)]
    assert first[0] == first[1]


def suggest(sampler: object, trials: int = 3) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    values = []
    for _ in range(trials):
        trial = study.ask()
        values.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, values[-1])
    return values


def test_paths_and_hydra_dirs(compose: ComposeFn) -> None:
    cfg = compose(["paths.root_dir=/somewhere"], hydra=True)
    assert cfg.paths.mlruns_dir == "/somewhere/mlruns"
    assert cfg.hydra.run.dir.startswith("/somewhere/logs/train/runs/")
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("algorithm", options("rl/algorithm"))
@pytest.mark.parametrize("option", [o for o in options("rl") if o != "joint"])
def test_rl(option: str, algorithm: str, compose: ComposeFn) -> None:
    cfg = compose([f"rl={option}", f"rl/algorithm={algorithm}"], "rl_train")
    assert cfg.rl.name == option
    assert cfg.model.causal  # the classifier it trains first is a streaming one
    factory = instantiate(cfg.rl.algorithm)
    assert factory.func.__name__ == algorithm.upper()


def test_rl_joint_builds_a_halting_policy_per_wait_cost(compose: ComposeFn) -> None:
    """rl=joint has no SB3 algorithm: each λ's model config carries its halting policy."""
    from ser.models.halting import HaltingPolicy
    from ser.rl.joint import joint_config

    cfg = compose(["rl=joint", "rl.wait_costs=[0.01,0.05]"], "rl_train")
    assert "algorithm" not in cfg.rl
    model_cfg = joint_config(cfg, 0.05)
    assert model_cfg.model.causal and model_cfg.callbacks.model_checkpoint.monitor == (
        "val/halt_return"
    )
    policy = instantiate(model_cfg.model.halting, hidden_size=8, num_classes=4, frame_rate=100.0)
    assert isinstance(policy, HaltingPolicy) and policy.wait_cost == 0.05
    assert policy.chunk_frames == 25  # rl.chunk_s=0.25 at 100 frames a second


@pytest.mark.parametrize("model", ["lstm", "cnn_lstm"])
def test_causal_model_option(model: str, compose: ComposeFn) -> None:
    cfg = compose([f"model={model}", "model.causal=true"])
    net = instantiate(cfg.model.net, input_dim=40, num_classes=4)
    assert net.causal
    assert not instantiate(
        compose([f"model={model}"]).model.net, input_dim=40, num_classes=4
    ).causal


@pytest.mark.parametrize("config_name", ["prepare", "extract", "evaluate"])
def test_stage_configs_extend_train(config_name: str, compose: ComposeFn) -> None:
    cfg = compose(["ckpt_path=x"] if config_name == "evaluate" else [], config_name)
    assert cfg.task_name != "train"
    assert cfg.model.name == compose().model.name


def test_unknown_option_is_rejected_with_the_choices(compose: ComposeFn) -> None:
    with pytest.raises(ConfigCompositionException, match="cnn_lstm"):
        compose(["model=transformer"])


def test_sweeps_go_through_sers_basic_sweeper_unless_a_search_picks_optuna(
    compose: ComposeFn,
) -> None:
    target = compose(hydra=True).hydra.sweeper._target_
    assert target == "hydra_plugins.ser_basic_sweeper.sweeper.SerBasicSweeper"
    tuned = compose(["hparams_search=optuna"], hydra=True).hydra.sweeper._target_
    assert tuned.startswith("hydra_plugins.ser_optuna_sweeper.")


def test_slurm_launcher_builds_the_sbatch_script_of_a_gpu_job_array(
    tmp_path: Path, compose: ComposeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hydra/launcher=slurm through Hydra's submitit launcher up to the submission: the job
    array's sbatch script, as submitit writes it (no SLURM here: a stand-in `srun` on PATH)."""
    import submitit

    cfg = compose(
        [f"paths.root_dir={tmp_path}", "hydra/launcher=slurm", "hydra.launcher.partition=a100"],
        hydra=True,
    )
    settings = cfg.hydra.launcher
    assert settings._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (settings.gpus_per_task, settings.timeout_min, settings.array_parallelism) == (1, 240, 8)
    (tmp_path / "bin").mkdir()
    srun = tmp_path / "bin" / "srun"
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    executors: list[Any] = []

    class Submitted(Exception):
        pass

    def submit(executor: Any, *args: Any) -> None:
        executors.append(executor._executor)
        raise Submitted  # stop where sbatch would be called

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", submit)
    launcher = instantiate(settings)
    launcher.config = cfg
    with pytest.raises(Submitted):
        launcher.launch([["model=mlp"], ["model=cnn"]], initial_job_idx=0)
    (executor,) = executors
    assert executor.parameters["array_parallelism"] == 8
    script = executor._make_submission_file_text("python -u -m submitit.core._submit", "x")
    for line in ("--partition=a100", "--gpus-per-task=1", "--time=240", "--cpus-per-task=8"):
        assert f"#SBATCH {line}\n" in script

"""Training entry point: compose -> instantiate -> fit -> test -> log; returns the metric to
optimise (so Hydra sweepers such as Optuna can maximise it).

    python train.py model=cnn_lstm features=mfcc
    python train.py -m model=mlp,cnn,lstm,cnn_lstm
"""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ser.augment import build as build_augmentation
from ser.data.datamodule import SERDataModule
from ser.data.manifest import load_manifest
from ser.errors import SerError, exit_on_user_error
from ser.evaluate import plot_learning_curves, write_evaluation
from ser.models.module import SERModule
from ser.tracking import finish_run, git_commit, mlflow_logger, run_summary

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def build_datamodule(cfg: DictConfig, frontend: DictConfig | None = None) -> SERDataModule:
    """The manifest, preprocessing, augmentation and feature extractor named by the config.

    `frontend` is the config whose preprocess and features are used instead (a checkpoint's,
    so that evaluation computes exactly the features the model was trained on).
    """
    frontend = cfg if frontend is None else frontend
    waveform_augment, spec_augment = build_augmentation(cfg.augmentation)
    return SERDataModule(
        manifest=load_manifest(cfg),
        labels=list(cfg.dataset.labels),
        preprocessor=instantiate(frontend.preprocess),
        extractor=instantiate(frontend.features.extractor),
        extractor_config=OmegaConf.to_container(frontend.features.extractor, resolve=True),
        cache_dir=cfg.paths.feature_cache_dir,
        augment=waveform_augment,
        spec_augment=spec_augment,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        window_s=cfg.data.get("window_s"),
        window_hop_s=cfg.data.get("window_hop_s"),
    )


def build_model(cfg: DictConfig, datamodule: SERDataModule) -> SERModule:
    """Instantiate the net with sizes from the data and inject it into the LightningModule."""
    net = instantiate(
        cfg.model.net,
        _convert_="partial",
        input_dim=datamodule.feature_dim,
        num_classes=datamodule.num_classes,
    )
    mean, std = datamodule.feature_stats()
    model_cfg = {k: v for k, v in cfg.model.items() if k != "net"}
    model = instantiate(
        model_cfg,
        _convert_="partial",  # plain lists in checkpoints, loadable with weights_only
        net=net,
        class_names=datamodule.labels,
        class_weights=datamodule.class_weights(),
        feature_mean=mean,
        feature_std=std,
    )
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def _sweep_tags() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    return {"sweep_id": Path(hydra_cfg.sweep.dir).name, "sweep_job": str(hydra_cfg.job.num)}


def _run_tags(cfg: DictConfig) -> dict[str, str]:
    tags = {
        "git_commit": git_commit(Path(__file__).parent),  # the code that ran
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "features": cfg.features.name,
        "protocol": cfg.protocol.name,
        **_sweep_tags(),
    }
    tags.update({f"tag.{t}": "true" for t in cfg.get("tags") or []})
    return tags


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job; returns the final metrics (fit, then test when `cfg.test`)."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    artifacts = output_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    datamodule = build_datamodule(cfg)
    loggers: list[Any] = []
    mlflow = None
    for name, settings in (cfg.get("logger") or {}).items():
        if name == "mlflow":
            settings = OmegaConf.to_container(settings, resolve=True)
            mlflow = mlflow_logger(settings, cfg.paths.mlruns_dir, _run_tags(cfg))
            loggers.append(mlflow)
        else:
            loggers.append(instantiate(settings))
    # SIGTERM (e.g. from a cluster scheduler) ends the run as KILLED instead of RUNNING forever.
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        metrics = _fit_and_test(cfg, datamodule, loggers, mlflow, artifacts)
    except BaseException as error:
        if mlflow is not None:
            status = finish_run(mlflow, error)
            log.error("MLflow run %s marked %s", mlflow.run_id, status)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if mlflow is not None:
        finish_run(mlflow, None)
        print(f"\n{run_summary(mlflow)}")
    if datamodule.skipped:
        print(
            f"Skipped {len(datamodule.skipped)} unusable audio files "
            f"(reasons in {artifacts / 'skipped_files.tsv'}):"
        )
        for path, reason in list(datamodule.skipped.items())[:10]:
            print(f"  {path}: {reason}")
    print(f"Outputs: {output_dir}")
    return metrics


def _fit_and_test(
    cfg: DictConfig,
    datamodule: SERDataModule,
    loggers: list[Any],
    mlflow: Any,
    artifacts: Path,
) -> dict[str, float]:
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    datamodule.prepare()
    if mlflow is not None:
        client, run_id = mlflow.experiment, mlflow.run_id
        client.set_tag(run_id, "dataset_fingerprint", datamodule.fingerprint)
        client.log_metric(run_id, "data/skipped_files", len(datamodule.skipped))
        for split in ("train", "val", "test"):
            client.log_metric(run_id, f"data/{split}_utterances", datamodule.split_size(split))
    if datamodule.skipped:
        lines = [f"{path}\t{reason}" for path, reason in datamodule.skipped.items()]
        (artifacts / "skipped_files.tsv").write_text("\n".join(lines) + "\n")
        log.warning("skipped %d unusable files (listed in skipped_files.tsv)", len(lines))

    model = build_model(cfg, datamodule)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(model=model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if model.history:
        plot_learning_curves(model.history, artifacts / "learning_curves.png")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best and cfg.get("save_checkpoint"):
        Path(cfg.save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, cfg.save_checkpoint)

    if cfg.get("test"):
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        preds, targets = model.test_predictions()
        write_evaluation(targets.tolist(), preds.tolist(), datamodule.labels, artifacts)
    if mlflow is not None:
        mlflow.experiment.log_artifacts(mlflow.run_id, str(artifacts))
        if best:
            mlflow.experiment.log_artifact(mlflow.run_id, best, "checkpoints")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point (`python train.py`, `ser-train`, `python -m ser.train`)."""
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    if metric and metric not in metrics:
        raise SerError(
            f"optimized_metric {metric!r} was not logged; choose one of {sorted(metrics)}"
        )
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()

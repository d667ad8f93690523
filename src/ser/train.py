"""Training entry point: compose -> instantiate -> fit -> test -> log; returns the metric to
optimise (so Hydra sweepers such as Optuna can maximise it).

    python train.py model=cnn_lstm features=mfcc
    python train.py -m model=mlp,cnn,lstm,cnn_lstm
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any, cast

import hydra
import joblib
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ser.atomic import atomic_write
from ser.callbacks import quiet_lightning
from ser.config import check_training_config, to_dict
from ser.data.datamodule import SERDataModule, build_datamodule
from ser.data.manifest import load_folds
from ser.data.splits import speakers_in
from ser.errors import SerError, exit_on_user_error
from ser.evaluate import plot_learning_curves, scores, write_evaluation
from ser.models.classical import ClassicalModel
from ser.models.halting import build_halting
from ser.models.module import SERModule
from ser.project import CONFIG_DIR
from ser.tracking import logger_tracking_uri, mlflow_logger, run_status, run_summary
from ser.tracking.registry import register_model
from ser.tracking.runs import logger_settings, run_tags

log = logging.getLogger(__name__)


def _global_rank() -> int:
    """This process's rank under DDP (0 otherwise), as Lightning sets it on `rank_zero_only`."""
    # An attribute Lightning adds at runtime; the function's (overloaded) type does not declare it.
    return rank_zero_only.rank  # type: ignore[attr-defined]


def build_model(cfg: DictConfig, datamodule: SERDataModule) -> SERModule | ClassicalModel:
    """Instantiate the net with sizes from the data and inject it into the LightningModule;
    a classical model config (no `net`) is instantiated as it is."""
    if "net" not in cfg.model:
        settings = to_dict(cfg.model)
        settings.pop("name")
        return instantiate(settings, _convert_="all")
    net = instantiate(
        cfg.model.net,
        _convert_="partial",
        input_dim=datamodule.feature_dim,
        num_classes=datamodule.num_classes,
    )
    mean, std = datamodule.feature_stats()
    # `causal` is a net setting, lifted to the model group so that `model.causal=true` works.
    # Resolved first: a scheduler may interpolate other model keys (e.g. max_lr from lr).
    model_cfg = to_dict(cfg.model)
    for key in ("net", "causal", "halting"):
        model_cfg.pop(key, None)
    halting_settings = to_dict(cfg.model).get("halting")
    # rl=joint's stopping policy, on frame-level features only (its chunks are frames).
    halting = None
    if halting_settings:
        rate = datamodule.frame_rate
        halting = build_halting(halting_settings, net, datamodule.num_classes, rate)
    model = instantiate(
        model_cfg,
        _convert_="partial",  # plain lists in checkpoints, loadable with weights_only
        net=net,
        halting=halting,
        class_names=datamodule.labels,
        class_weights=datamodule.class_weights(),
        feature_mean=mean,
        feature_std=std,
    )
    model.run_config = to_dict(cfg)
    model.train_speakers = speakers_in(datamodule.manifest, "train")
    return model


def _fit_and_test_classical(
    cfg: DictConfig,
    model: ClassicalModel,
    datamodule: SERDataModule,
    loggers: list[Any],
    artifacts: Path,
) -> dict[str, float]:
    model.fit(datamodule)

    def evaluate(split: str) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """A split's scores, predictions and functionals (computed once per split)."""
        x, targets = model.features(datamodule, split), datamodule.targets(split)
        preds = model.predict(x)
        return scores(targets, preds) | model.cluster_scores(x, targets), preds, x

    val, _, _ = evaluate("val")
    metrics = {f"val/{k}": v for k, v in val.items()} | {"val/uar_best": val["uar"]}
    if cfg.get("test"):
        test, preds, x = evaluate("test")
        metrics |= {f"test/{k}": v for k, v in test.items()}
        write_evaluation(
            datamodule.targets("test"),
            preds.tolist(),
            datamodule.labels,
            artifacts,
            datamodule.split_utterances("test"),
            model.posteriors(x, datamodule.num_classes),
        )
    with atomic_write(artifacts / "model.joblib") as tmp:
        joblib.dump(model.pipeline, tmp)
    for logger in loggers:
        logger.log_metrics(metrics)
    return metrics


def train(
    cfg: DictConfig,
    manifest: pd.DataFrame | None = None,
    parent_run_id: str | None = None,
    fold: int | None = None,
) -> dict[str, float]:
    """Run one training job; returns the final metrics (fit, then test when `cfg.test`).

    With `manifest`, `parent_run_id` and `fold` it is one fold of a cross-validation, logged as
    a child run of the parent.
    """
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    artifacts = output_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    with atomic_write(artifacts / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))

    datamodule = build_datamodule(cfg, manifest=manifest)
    loggers: list[Any] = []
    mlflow = None
    for name, settings in (cfg.get("logger") or {}).items():
        if name == "mlflow":
            settings = logger_settings(cfg)
            tags = run_tags(cfg)
            if parent_run_id is not None:
                settings["run_name"] = f"{settings.get('run_name')}-fold{fold}"
                tags |= {"mlflow.parentRunId": parent_run_id, "fold": str(fold)}
            mlflow = mlflow_logger(settings, cfg.paths.mlruns_dir, tags, local_dir=output_dir)
            loggers.append(mlflow)
        else:
            loggers.append(instantiate(settings))
    # Under DDP every process runs this function; only rank 0 (the MLflow run's owner; other
    # ranks hold Lightning's dummy logger) marks the run, reports and writes artifacts.
    main_process = _global_rank() == 0
    with run_status(mlflow, owner=main_process):
        metrics = _fit_and_test(cfg, datamodule, loggers, mlflow, artifacts)
    if not main_process:
        return metrics
    if mlflow is not None:
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
        logger.log_hyperparams(to_dict(cfg))
    datamodule.prepare()
    if mlflow is not None:
        client, run_id = mlflow.experiment, mlflow.run_id
        client.set_tag(run_id, "dataset_fingerprint", datamodule.fingerprint)
        client.log_metric(run_id, "data/skipped_files", len(datamodule.skipped))
        for split in ("train", "val", "test"):
            client.log_metric(run_id, f"data/{split}_utterances", datamodule.split_size(split))
    if datamodule.skipped and _global_rank() == 0:
        lines = [f"{path}\t{reason}" for path, reason in datamodule.skipped.items()]
        with atomic_write(artifacts / "skipped_files.tsv") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        log.warning("skipped %d unusable files (listed in skipped_files.tsv)", len(lines))

    model = build_model(cfg, datamodule)
    if isinstance(model, ClassicalModel):
        metrics = _fit_and_test_classical(cfg, model, datamodule, loggers, artifacts)
        if mlflow is not None:
            mlflow.experiment.log_artifacts(mlflow.run_id, str(artifacts))
        return metrics
    if _global_rank() == 0:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{type(model.net).__name__}: {trainable:,} trainable parameters")
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **_device_settings(cfg.trainer)
    )
    trainer.fit(model=model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    checkpoint = trainer.checkpoint_callback
    # Typed as Lightning's Checkpoint base; the callbacks configs add a ModelCheckpoint.
    best = cast(ModelCheckpoint, checkpoint).best_model_path if checkpoint else ""
    if cfg.get("test"):
        # Under DDP each process tests a shard; the metrics and predictions are the whole set's.
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if not trainer.is_global_zero:
        return metrics
    if model.history:
        plot_learning_curves(model.history, artifacts / "learning_curves.png")
    if best and cfg.get("save_checkpoint"):
        Path(cfg.save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, cfg.save_checkpoint)
    if cfg.get("test"):
        preds, targets, posteriors = model.test_predictions()
        write_evaluation(
            targets.tolist(),
            preds.tolist(),
            datamodule.labels,
            artifacts,
            datamodule.split_utterances("test"),
            posteriors.numpy(),
        )
    if mlflow is not None:
        mlflow.experiment.log_artifacts(mlflow.run_id, str(artifacts))
        if best:
            mlflow.experiment.log_artifact(mlflow.run_id, best, "checkpoints")
        if best and cfg.get("register_model") and mlflow.server_lost is not None:
            print(f"Not registered as {cfg.register_model}: the MLflow server was lost")
        elif best and cfg.get("register_model"):
            version = register_model(
                mlflow.run_id,
                cfg.register_model,
                tracking_uri=logger_tracking_uri(mlflow),
                checkpoint=best,
                bundle_encoder=bool(cfg.get("register_bundle_encoder")),
            )
            print(f"Registered models:/{cfg.register_model}/{version} (alias champion)")
    return metrics


def _device_settings(trainer_cfg: DictConfig) -> dict[str, Any]:
    """Trainer settings that depend on the hardware found: SyncBatchNorm runs on CUDA only,
    so a CPU (gloo) DDP run keeps per-process batch-norm statistics instead of crashing."""
    if not trainer_cfg.get("sync_batchnorm"):
        return {}
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return {}
    log.info("trainer.sync_batchnorm ignored: SyncBatchNorm needs CUDA GPUs (this run: CPU)")
    return {"sync_batchnorm": False}


# val/uar is the last epoch's: the one to tune on when the last epoch is tested (fixed schedule).
CV_METRICS = ("test/uar", "test/wa", "test/f1", "val/uar", "val/uar_best")


def cross_validate(cfg: DictConfig, folds: list[pd.DataFrame]) -> dict[str, float]:
    """Train and test each fold as a child run of one MLflow parent run; the parent gets mean
    and std of UAR/WA/F1, the per-fold table and the confusion matrix summed over folds.
    Returns the means under the usual names (so sweepers optimise the mean val/uar_best)."""
    output_dir = Path(cfg.paths.output_dir)
    artifacts = output_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    parent = None
    if (cfg.get("logger") or {}).get("mlflow") is not None:
        settings = logger_settings(cfg)
        tags = run_tags(cfg) | {"folds": str(len(folds))}
        parent = mlflow_logger(settings, cfg.paths.mlruns_dir, tags, local_dir=output_dir)
        parent.log_hyperparams(to_dict(cfg))
    with run_status(parent, owner=_global_rank() == 0):
        rows = []
        for k, manifest in enumerate(folds):
            fold_cfg = copy.deepcopy(cfg)  # each fold gets its own config; cfg stays as it was
            with open_dict(fold_cfg):
                fold_cfg.paths.output_dir = str(output_dir / f"fold{k}")
            parent_id = parent.run_id if parent is not None else None
            fold_metrics = train(fold_cfg, manifest, parent_run_id=parent_id, fold=k)
            test_speakers = sorted(manifest.loc[manifest["split"] == "test", "speaker"].unique())
            rows.append(
                {"fold": k, "test_speakers": " ".join(map(str, test_speakers))}
                | {m: fold_metrics.get(m, float("nan")) for m in CV_METRICS}
            )
        table = pd.DataFrame(rows)
        summary = {m: float(table[m].mean()) for m in CV_METRICS}
        summary |= {f"{m}_std": float(table[m].std(ddof=0)) for m in CV_METRICS}
        if _global_rank() != 0:  # under DDP, rank 0 alone writes the summary
            return summary
        with atomic_write(artifacts / "folds.csv") as tmp:
            table.to_csv(tmp, index=False)
        if cfg.get("test"):
            predictions = pd.concat(
                pd.read_csv(
                    output_dir / f"fold{k}" / "artifacts" / "predictions.csv",
                    dtype={"speaker": str},
                )
                for k in range(len(folds))
            )
            labels = list(cfg.dataset.labels)
            index = {name: i for i, name in enumerate(labels)}
            posterior_columns = [f"p_{name}" for name in labels]
            # Summed over folds: every utterance is tested exactly once.
            write_evaluation(
                predictions["actual"].map(index).tolist(),
                predictions["predicted"].map(index).tolist(),
                labels,
                artifacts,
                predictions,
                (
                    predictions[posterior_columns].to_numpy()
                    if set(posterior_columns) <= set(predictions.columns)
                    else None
                ),
            )
        print(table.to_string(index=False))
        print(" ".join(f"{m}={summary[m]:.4f}+-{summary[m + '_std']:.4f}" for m in CV_METRICS))
        if parent is not None:
            client = parent.experiment
            for metric in CV_METRICS:
                client.log_metric(parent.run_id, f"{metric}_mean", summary[metric])
                client.log_metric(parent.run_id, f"{metric}_std", summary[f"{metric}_std"])
            client.log_artifacts(parent.run_id, str(artifacts))
    if parent is not None:
        print(f"\n{run_summary(parent)}")
    return summary


def train_folds(cfg: DictConfig) -> dict[str, float]:
    """One run for a hold-out protocol, a cross-validation for a protocol with folds."""
    check_training_config(cfg)
    folds = load_folds(cfg)
    return train(cfg, folds[0]) if len(folds) == 1 else cross_validate(cfg, folds)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point (`python train.py`, `ser-train`, `python -m ser.train`)."""
    return metric_to_optimise(cfg.get("optimized_metric"), train_folds(cfg))


def metric_to_optimise(name: str | None, metrics: dict[str, float]) -> float | None:
    """The value a sweeper maximises; a name that was not logged is an error that suggests
    validation metrics only (a sweep that optimises a test metric has seen the test set)."""
    if not name:
        return None
    if name not in metrics:
        choices = sorted(m for m in metrics if m.startswith("val/"))
        raise SerError(f"optimized_metric {name!r} was not logged; choose one of {choices}")
    return metrics[name]


if __name__ == "__main__":
    main()

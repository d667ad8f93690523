"""What a training run records about itself in MLflow: its tags (the code, the data, the
protocol, the sweep it belongs to) and its logger settings, read from the composed config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ser.config import to_dict
from ser.data.splits import validates_on_training_speakers
from ser.tracking.mlflow import git_commit


def sweep_tags() -> dict[str, str]:
    """The sweep's id and this job's number, for a run of a Hydra multirun; in an Optuna sweep
    of a named study also the study's name (the job number is the trial's), which groups the
    runs of every worker and every command that shares the study."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    tags = {"sweep_id": Path(hydra_cfg.sweep.dir).name, "sweep_job": str(hydra_cfg.job.num)}
    study = hydra_cfg.sweeper.get("study_name")  # a DictConfig, whichever sweeper's
    if study:
        tags["optuna_study"] = str(study)
    return tags


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """Tags to filter runs by in the MLflow UI."""
    tags = {
        "git_commit": git_commit(Path(__file__).parent),  # the code that ran
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "features": cfg.features.name,
        "protocol": cfg.protocol.name,
        "speaker_independent": str(cfg.protocol.get("speaker_independent", True)).lower(),
        "speaker_norm": str(cfg.features.get("speaker_norm", False)).lower(),
        # Validation on utterances of the training speakers: the test is still on unseen
        # speakers, but the checkpoint was chosen on seen ones.
        "model_selection": (
            "speaker_dependent"
            if validates_on_training_speakers(cfg.protocol)
            or not cfg.protocol.get("speaker_independent", True)
            else "speaker_independent"
        ),
        **sweep_tags(),
    }
    tags.update({f"tag.{t}": "true" for t in cfg.get("tags") or []})
    return tags


def logger_settings(cfg: DictConfig) -> dict[str, Any]:
    """The logger.mlflow config, resolved; speaker-normalised runs say so in their name."""
    settings = to_dict(cfg.logger.mlflow)
    if cfg.features.get("speaker_norm"):
        settings["run_name"] = f"{settings.get('run_name')}-speaker_norm"
    return settings

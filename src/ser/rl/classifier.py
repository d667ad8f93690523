"""The streaming classifier Emo-RL reads: a given checkpoint (checked for causality, features
and unseen speakers) or one trained now on the fold's training speakers, and its posteriors
after every chunk of a split's utterances. Shared by both designs (rl=emorl, rl=joint)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, open_dict

from ser.config import to_dict
from ser.data.splits import speakers_in
from ser.errors import SerError
from ser.inference.recognizer import Recognizer, load_recognizer
from ser.inference.streaming import UtteranceStream, check_streaming, stream_files
from ser.train import train

log = logging.getLogger(__name__)


def classifier(cfg: DictConfig, manifest: pd.DataFrame) -> Recognizer:
    """The configured streaming classifier, or one trained now on the manifest's speakers."""
    if cfg.rl.classifier:
        recognizer = load_recognizer(cfg.rl.classifier)
        extractor = to_dict(cfg.features.extractor)
        check_streaming(recognizer, extractor)
        check_unseen_speakers(recognizer, manifest, str(cfg.rl.agent_split))
        return recognizer
    return train_classifier(cfg, manifest)


def check_unseen_speakers(recognizer: Recognizer, manifest: pd.DataFrame, agent_split: str) -> None:
    """Refuse a given classifier that was trained on this run's test speakers (or, for
    `agent_split=val`, its validation speakers): its decisions there would not be
    speaker-independent. A checkpoint from another split seed is the usual way to get here."""
    seen = recognizer.module.train_speakers
    if seen is None:  # a checkpoint saved before ser recorded its speakers
        return
    splits = ["test", "val"] if agent_split == "val" else ["test"]
    for split in splits:
        overlap = sorted(set(seen) & set(speakers_in(manifest, split)))
        if overlap:
            seed = recognizer.config.get("protocol", {}).get("seed")
            raise SerError(
                f"rl.classifier {recognizer.source} was trained on speakers {overlap}, which are "
                f"{split} speakers here; use the split it was trained with (protocol.seed={seed}) "
                "or leave rl.classifier unset to train one on this run's training speakers"
            )


def train_classifier(
    cfg: DictConfig, manifest: pd.DataFrame, copy_name: str | None = None
) -> Recognizer:
    """A streaming classifier trained now (`model` of the config, one MLflow run of its own)
    on the manifest's train speakers, saved as `<output_dir>/classifier.ckpt`; a cross-fitted
    copy is saved as `<copy_name>.ckpt`, its run name ending in `-<copy_name>`."""
    name = copy_name or "classifier"
    path = Path(cfg.paths.output_dir) / f"{name}.ckpt"
    train_cfg = copy.deepcopy(cfg)
    with open_dict(train_cfg):
        train_cfg.save_checkpoint = str(path)
        train_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / name)
        if copy_name and (train_cfg.get("logger") or {}).get("mlflow"):
            train_cfg.logger.mlflow.run_name = f"{train_cfg.logger.mlflow.run_name}-{copy_name}"
    train(train_cfg, manifest)
    recognizer = load_recognizer(path)
    check_streaming(recognizer)
    return recognizer


def split_streams(
    recognizer: Recognizer, manifest: pd.DataFrame, split: str, chunk_s: float
) -> list[UtteranceStream]:
    rows = manifest[manifest["split"] == split]
    unknown = sorted(set(rows["label"]) - set(recognizer.class_names))
    if unknown:
        raise SerError(
            f"labels {unknown} are not among the classifier's classes {recognizer.class_names}; "
            "use the dataset and label_map it was trained with"
        )
    index = {name: i for i, name in enumerate(recognizer.class_names)}
    streams, skipped = stream_files(
        recognizer, list(rows["path"]), [index[x] for x in rows["label"]], chunk_s
    )
    if skipped:
        log.warning("%s: skipped %d files: %s", split, len(skipped), list(skipped.items())[:3])
    if not streams:
        raise SerError(f"no usable {split} utterances to stream; check the dataset and protocol")
    return streams

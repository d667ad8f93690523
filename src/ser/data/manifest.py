"""The manifest: one row per utterance (path, speaker, label, split), built or read from CSV."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ser.atomic import atomic_write
from ser.data.splits import check_speaker_independent, validates_on_training_speakers
from ser.errors import SerError

REQUIRED_COLUMNS = ("path", "speaker", "label", "split")
# Protocol config keys that describe the protocol rather than being arguments of its function.
PROTOCOL_SETTINGS = ("name", "speaker_independent", "test_dataset")

log = logging.getLogger(__name__)


def _load_corpus(
    dataset: DictConfig, labels: list[str] | None, merge: dict[str, str]
) -> pd.DataFrame:
    """The corpus's utterances of `labels` (None: dataset.labels was never set, an error that
    lists the labels the corpus has). A label the corpus lacks is an error too; utterances of
    labels not asked for are left out with one warning that counts them."""
    corpus = instantiate(dataset.loader)
    corpus["label"] = corpus["label"].replace(merge)  # e.g. IEMOCAP excited -> happy
    found = sorted(corpus["label"].astype(str).unique())
    has = f"dataset {dataset.name!r} has the labels [{','.join(found)}]"
    if dataset.name == "folder":
        has += " (its label folders' names, lower-cased)"
    if labels is None:
        raise SerError(
            f"dataset.labels is not set; {has}: set the ones to use, e.g. "
            f"dataset.labels=[{','.join(found)}]"
        )
    absent = [label for label in labels if label not in found]
    if absent:
        raise SerError(f"dataset.labels names {absent}, which are not in the corpus; {has}")
    left_out = corpus.loc[~corpus["label"].isin(labels), "label"]
    if len(left_out):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(left_out.value_counts().items()))
        log.warning(
            "dataset %r: left out %d utterances of labels not in dataset.labels (%s)",
            dataset.name,
            len(left_out),
            counts,
        )
    corpus = corpus[corpus["label"].isin(labels)].reset_index(drop=True)
    return corpus


def build_folds(cfg: DictConfig) -> list[pd.DataFrame]:
    """Load the corpus named by `cfg.dataset`, keep its labels, and split it by `cfg.protocol`:
    one manifest for a hold-out protocol, one per fold for cross-validation."""
    labels = dataset_labels(cfg.dataset)
    merge = dict(cfg.dataset.get("label_merge") or {})
    corpus = _load_corpus(cfg.dataset, labels, merge)
    assert labels is not None  # _load_corpus raises where dataset.labels is not set
    protocol = {k: v for k, v in cfg.protocol.items() if k not in PROTOCOL_SETTINGS}
    test_dataset = cfg.protocol.get("test_dataset")
    if test_dataset is None:
        split = instantiate(protocol)(corpus)
    else:
        # Cross-corpus: the classes are the labels both corpora have, named explicitly.
        test_labels = {merge.get(label, label) for label in test_dataset.labels}
        shared = [label for label in labels if label in test_labels]
        if shared != labels:
            raise SerError(
                f"{test_dataset.name} lacks labels {sorted(set(labels) - set(shared))} of "
                f"{cfg.dataset.name}; set dataset.labels=[{','.join(shared)}] (the shared ones)"
            )
        test_corpus = _load_corpus(test_dataset, labels, merge)
        split = instantiate(protocol)(corpus, test_corpus)
    return split if isinstance(split, list) else [split]


def dataset_labels(dataset: DictConfig) -> list[str] | None:
    """`dataset.labels` as a list, or None where the config leaves it to the user (???)."""
    if OmegaConf.is_missing(dataset, "labels"):
        return None
    return [str(label) for label in dataset.labels]


def build_manifest(cfg: DictConfig) -> pd.DataFrame:
    """The one manifest of a hold-out protocol (for `python -m ser.prepare` and DVC)."""
    folds = build_folds(cfg)
    if len(folds) != 1:
        raise SerError(
            f"protocol={cfg.protocol.name} makes {len(folds)} folds; a single manifest needs "
            "protocol=holdout (cross-validation runs through `python train.py` directly)"
        )
    return folds[0]


def read_manifest(
    path: str | Path, labels: Sequence[str] | None = None, val_from_train: bool = False
) -> pd.DataFrame:
    """Read a manifest CSV and check its columns, labels and speaker independence (with
    `val_from_train`, validation utterances may come from training speakers)."""
    path = Path(path)
    if not path.is_file():
        raise SerError(f"manifest {path} not found; create it with `python -m ser.prepare`")
    manifest = pd.read_csv(path, dtype={"speaker": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise SerError(f"manifest {path} lacks columns {missing}; expected {REQUIRED_COLUMNS}")
    if labels is not None:
        unknown = sorted(set(manifest["label"]) - set(labels))
        if unknown:
            raise SerError(f"manifest {path} has labels {unknown} outside dataset.labels {labels}")
    check_speaker_independent(manifest, val_from_train)
    return manifest


def load_folds(cfg: DictConfig) -> list[pd.DataFrame]:
    """[`cfg.data.manifest`] if set (e.g. from the DVC prepare stage), else built in-process."""
    if cfg.data.get("manifest"):
        return [load_manifest(cfg)]
    return build_folds(cfg)


def load_manifest(cfg: DictConfig) -> pd.DataFrame:
    """The single manifest of the config (a hold-out protocol or `data.manifest`)."""
    if cfg.data.get("manifest"):
        shared_val = validates_on_training_speakers(cfg.protocol)
        labels = dataset_labels(cfg.dataset)
        manifest = read_manifest(cfg.data.manifest, labels, shared_val)
        if labels is None:
            found = ",".join(sorted(manifest["label"].astype(str).unique()))
            raise SerError(
                f"dataset.labels is not set; the manifest {cfg.data.manifest} has the labels "
                f"[{found}]: set the ones to use, e.g. dataset.labels=[{found}]"
            )
        return manifest
    return build_manifest(cfg)


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically, so a crash never leaves a half-written manifest behind."""
    with atomic_write(path) as tmp:
        manifest.to_csv(tmp, index=False)
    return Path(path)


def dataset_fingerprint(manifest: pd.DataFrame, file_hashes: Sequence[str]) -> str:
    """Short hash of which audio (by content) went into which split with which label."""
    digest = hashlib.sha256()
    for (_, row), file_hash in zip(manifest.iterrows(), file_hashes, strict=True):
        digest.update(f"{file_hash}|{row['speaker']}|{row['label']}|{row['split']}\n".encode())
    return digest.hexdigest()[:16]

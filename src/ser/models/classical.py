"""The specification's non-neural models on utterance functionals: pattern recognition with
scikit-learn (SVM, kNN, random forest) and unsupervised k-means clusters.

They use the same data, protocols, metrics and logging as the nets: the datamodule's cached
frame features are pooled into functionals (`ser.features.functionals`), a StandardScaler is
fitted on the training speakers only, and the test speakers are scored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.metrics import adjusted_rand_score, confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ser.features.functionals import Functionals


class SplitFeatures(Protocol):
    """What a classical model reads from the data (ser.data's SERDataModule has it): each
    split's cached frame features, (frames, dims) per utterance, and label indices."""

    @property
    def num_classes(self) -> int: ...

    def split_features(self, split: str) -> list[np.ndarray]: ...

    def targets(self, split: str) -> list[int]: ...


class ClassicalModel:
    """A scikit-learn estimator behind a train-only StandardScaler, on utterance functionals."""

    def __init__(self, estimator: BaseEstimator, stats: Sequence[str] = ("mean", "std")) -> None:
        self.estimator = estimator
        self.functionals = Functionals(stats)
        self.pipeline: Any = None
        self.is_clustering = isinstance(estimator, ClusterMixin)
        # Cluster id -> label index, matched on the training speakers (Hungarian algorithm).
        self.cluster_to_label: dict[int, int] = {}

    def features(self, data: SplitFeatures, split: str) -> np.ndarray:
        """Functionals of every utterance of a split, (utterances, dims * stats), computed from
        the cached (never augmented) frame features."""
        frames = [torch.from_numpy(f) for f in data.split_features(split)]
        rows = []
        for start in range(0, len(frames), 64):
            batch = frames[start : start + 64]
            lengths = torch.tensor([len(f) for f in batch])
            x = nn.utils.rnn.pad_sequence(batch, batch_first=True)
            with torch.no_grad():
                rows.append(self.functionals(x.double(), lengths).numpy())
        return np.concatenate(rows)

    def fit(self, data: SplitFeatures) -> None:
        x, y = self.features(data, "train"), np.asarray(data.targets("train"))
        estimator = clone(self.estimator)
        if self.is_clustering and estimator.get_params().get("n_clusters", 0) is None:
            estimator.set_params(n_clusters=data.num_classes)
        self.pipeline = make_pipeline(StandardScaler(), estimator)
        if self.is_clustering:
            clusters = self.pipeline.fit_predict(x)
            self.cluster_to_label = hungarian_mapping(clusters, y, data.num_classes)
        else:
            self.pipeline.fit(x, y)

    def posteriors(self, x: np.ndarray, num_classes: int) -> np.ndarray | None:
        """Class probabilities (utterances, classes) of functionals rows `x` (`features`) where
        the estimator gives them (not SVM without probability=True, not k-means); else None."""
        if self.is_clustering or not hasattr(self.pipeline, "predict_proba"):
            return None
        probs = self.pipeline.predict_proba(x)
        out = np.zeros((len(probs), num_classes))
        out[:, self.pipeline.classes_] = probs  # columns in label order, absent classes 0
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Label indices of functionals rows `x` (`features`)."""
        return self._labels(self.pipeline.predict(x))

    def _labels(self, outputs: np.ndarray) -> np.ndarray:
        """Label indices from the pipeline's outputs (cluster ids are mapped, -1 if unmatched)."""
        if self.is_clustering:
            return np.array([self.cluster_to_label.get(int(c), -1) for c in outputs])
        return outputs

    def cluster_scores(self, x: np.ndarray, targets: Sequence[int]) -> dict[str, float]:
        """For k-means, how well the clusters of functionals rows `x` match their labels:
        purity and adjusted Rand index (no label mapping needed); nothing for classifiers."""
        if not self.is_clustering:
            return {}
        labels = np.asarray(targets)
        clusters = self.pipeline.predict(x)
        return {
            "purity": cluster_purity(clusters, labels),
            "ari": float(adjusted_rand_score(labels, clusters)),
        }


def hungarian_mapping(clusters: np.ndarray, labels: np.ndarray, n_labels: int) -> dict[int, int]:
    """The one-to-one cluster -> label assignment that maximises agreement."""
    n_clusters = int(clusters.max()) + 1
    counts = confusion_matrix(labels, clusters, labels=range(max(n_labels, n_clusters)))
    rows, cols = linear_sum_assignment(-counts[:n_labels, :n_clusters])
    return {int(c): int(r) for r, c in zip(rows, cols, strict=True)}


def cluster_purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of utterances whose cluster's majority label is their own."""
    total = 0
    for cluster in np.unique(clusters):
        total += np.bincount(labels[clusters == cluster]).max()
    return float(total / len(labels))

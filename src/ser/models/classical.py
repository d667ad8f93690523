"""The specification's non-neural models on utterance functionals: pattern recognition with
scikit-learn (SVM, kNN, random forest) and unsupervised k-means clusters.

They use the same data, protocols, metrics and logging as the nets: the datamodule's cached
frame features are pooled into functionals (`ser.features.functionals`), a StandardScaler is
fitted on the training speakers only, and the test speakers are scored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.metrics import adjusted_rand_score, confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser.data.datamodule import SERDataModule, pad_collate
from ser.evaluate.metrics import scores
from ser.features.functionals import Functionals


class ClassicalModel:
    """A scikit-learn estimator behind a train-only StandardScaler, on utterance functionals."""

    def __init__(self, estimator: BaseEstimator, stats: Sequence[str] = ("mean", "std")) -> None:
        self.estimator = estimator
        self.functionals = Functionals(stats)
        self.pipeline: Any = None
        self.is_clustering = isinstance(estimator, ClusterMixin)
        # Cluster id -> label index, matched on the training speakers (Hungarian algorithm).
        self.cluster_to_label: dict[int, int] = {}

    def features(self, datamodule: SERDataModule, split: str) -> np.ndarray:
        """Functionals of every utterance of a split, (utterances, dims * stats), computed from
        the cached (never augmented) frame features."""
        frames = [torch.from_numpy(f) for f in datamodule.split_features(split)]
        rows = []
        for start in range(0, len(frames), 64):
            items = [(f, 0) for f in frames[start : start + 64]]
            x, lengths, _ = pad_collate(items)
            with torch.no_grad():
                rows.append(self.functionals(x.double(), lengths).numpy())
        return np.concatenate(rows)

    def fit(self, datamodule: SERDataModule) -> None:
        x, y = self.features(datamodule, "train"), np.asarray(datamodule.targets("train"))
        estimator = clone(self.estimator)
        if self.is_clustering and estimator.get_params().get("n_clusters", 0) is None:
            estimator.set_params(n_clusters=datamodule.num_classes)
        self.pipeline = make_pipeline(StandardScaler(), estimator)
        if self.is_clustering:
            clusters = self.pipeline.fit_predict(x)
            self.cluster_to_label = hungarian_mapping(clusters, y, datamodule.num_classes)
        else:
            self.pipeline.fit(x, y)

    def posteriors(self, datamodule: SERDataModule, split: str) -> np.ndarray | None:
        """Class probabilities (utterances, classes) where the estimator gives them (not SVM
        without probability=True, not k-means); None otherwise."""
        if self.is_clustering or not hasattr(self.pipeline, "predict_proba"):
            return None
        probs = self.pipeline.predict_proba(self.features(datamodule, split))
        out = np.zeros((len(probs), datamodule.num_classes))
        out[:, self.pipeline.classes_] = probs  # columns in label order, absent classes 0
        return out

    def predict(self, datamodule: SERDataModule, split: str) -> np.ndarray:
        return self._labels(self.pipeline.predict(self.features(datamodule, split)))

    def _labels(self, outputs: np.ndarray) -> np.ndarray:
        """Label indices from the pipeline's outputs (cluster ids are mapped, -1 if unmatched)."""
        if self.is_clustering:
            return np.array([self.cluster_to_label.get(int(c), -1) for c in outputs])
        return outputs

    def evaluate(self, datamodule: SERDataModule, split: str) -> tuple[dict[str, float], list]:
        """Scores of a split (plus cluster purity and ARI for k-means) and the predictions."""
        targets = np.asarray(datamodule.targets(split))
        outputs = self.pipeline.predict(self.features(datamodule, split))
        preds = self._labels(outputs)
        metrics = scores(targets, preds)
        if self.is_clustering:
            metrics["purity"] = cluster_purity(outputs, targets)
            metrics["ari"] = float(adjusted_rand_score(targets, outputs))
        return metrics, preds.tolist()


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

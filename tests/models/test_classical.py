"""Classical baselines: cluster matching and purity, and full runs through the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from sklearn.metrics import accuracy_score, adjusted_rand_score, balanced_accuracy_score

from ser.models.classical import cluster_purity, hungarian_mapping
from ser.train import train


def test_hungarian_mapping_recovers_permuted_clusters() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1, 0])
    assert hungarian_mapping(clusters, labels, 3) == {2: 0, 0: 1, 1: 2}


def test_cluster_purity() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    clusters = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_purity(clusters, labels) == pytest.approx(4 / 6)


@pytest.mark.parametrize("model", ["svm", "knn", "logreg", "random_forest", "kmeans"])
def test_classical_model_trains_and_is_tracked(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, model: str
) -> None:
    metrics = train(make_cfg([f"model={model}"]))
    client = MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("ser-synthetic").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/uar"] == pytest.approx(metrics["test/uar"])
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    predictions = pd.read_csv(local / "predictions.csv")
    # the scores are those of the predictions it wrote
    actual, predicted = predictions["actual"], predictions["predicted"]
    assert metrics["test/uar"] == pytest.approx(balanced_accuracy_score(actual, predicted))
    assert metrics["test/wa"] == pytest.approx(accuracy_score(actual, predicted))
    if model == "kmeans":
        # each cluster is matched to one label: purity and ARI are those of the mapped labels
        majority = pd.crosstab(predicted, actual).max(axis=1).sum()
        assert run.data.metrics["test/purity"] == pytest.approx(majority / len(predictions))
        assert run.data.metrics["test/ari"] == pytest.approx(adjusted_rand_score(actual, predicted))
    else:
        assert metrics["test/uar"] > 0.4  # well above chance (0.25) on the synthetic corpus
    pipeline = joblib.load(local / "model.joblib")
    assert type(pipeline[0]).__name__ == "StandardScaler"
    # the scaler saw the training speakers' utterances and nothing else
    assert pipeline[0].n_samples_seen_ == run.data.metrics["data/train_utterances"]
    assert (local / "confusion_matrix.png").exists()
    assert len(predictions) == run.data.metrics["data/test_utterances"]
    assert predictions.path.map(lambda p: Path(p).is_file()).all()
    has_posteriors = model in ("knn", "logreg", "random_forest")  # SVC and k-means give none
    assert any(c.startswith("p_") for c in predictions.columns) == has_posteriors
    if has_posteriors:
        probs = predictions.filter(like="p_").to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)

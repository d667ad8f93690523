"""Test-set scores and the files that report them (JSON metrics, CSV predictions, report)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from ser.atomic import atomic_write
from ser.evaluate.plots import plot_confusion_matrix


def scores(
    targets: Sequence[int] | np.ndarray, preds: Sequence[int] | np.ndarray
) -> dict[str, float]:
    """UAR (balanced accuracy, the headline), WA (accuracy) and macro-F1."""
    return {
        "uar": float(balanced_accuracy_score(targets, preds)),
        "wa": float(accuracy_score(targets, preds)),
        "f1": float(f1_score(targets, preds, average="macro", zero_division=0)),
    }


def write_evaluation(
    targets: Sequence[int],
    preds: Sequence[int],
    class_names: Sequence[str],
    out_dir: str | Path,
    utterances: pd.DataFrame | None = None,
    posteriors: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write metrics.json, classification_report.{txt,json}, predictions.csv and
    confusion_matrix.png into out_dir; return their paths.

    predictions.csv has one row per utterance: its path and speaker (from `utterances`, rows in
    the order of `targets`), actual and predicted label (the DVC confusion plot's input) and,
    where the model gives them, the posterior of each class (`p_<class>`), so that every error
    can be traced to its file."""
    out = Path(out_dir)
    names = list(class_names)
    labels = list(range(len(names)))
    report_kwargs = {"labels": labels, "target_names": names, "zero_division": 0}
    files = {
        "metrics": out / "metrics.json",
        "report": out / "classification_report.txt",
        "report_json": out / "classification_report.json",
        "predictions": out / "predictions.csv",
        "confusion_matrix": out / "confusion_matrix.png",
    }
    with atomic_write(files["metrics"]) as tmp:
        tmp.write_text(
            json.dumps({f"test/{k}": v for k, v in scores(targets, preds).items()}, indent=2)
        )
    with atomic_write(files["report"]) as tmp:
        tmp.write_text(classification_report(targets, preds, digits=3, **report_kwargs))
    with atomic_write(files["report_json"]) as tmp:
        report = classification_report(targets, preds, output_dict=True, **report_kwargs)
        tmp.write_text(json.dumps(report, indent=2))
    table = pd.DataFrame(
        {"actual": [names[t] for t in targets], "predicted": [names[p] for p in preds]}
    )
    if utterances is not None:
        if len(utterances) != len(table):
            raise ValueError(f"{len(utterances)} utterances for {len(table)} predictions")
        info = utterances[["path", "speaker"]].reset_index(drop=True)
        table = pd.concat([info, table], axis=1)
    if posteriors is not None:
        probs = np.asarray(posteriors, dtype=float).round(6)
        for i, name in enumerate(names):
            table[f"p_{name}"] = probs[:, i]
    with atomic_write(files["predictions"]) as tmp:
        table.to_csv(tmp, index=False)
    matrix = confusion_matrix(targets, preds, labels=labels)
    plot_confusion_matrix(np.asarray(matrix), names, files["confusion_matrix"])
    return files

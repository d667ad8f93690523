"""PNG figures (headless matplotlib): confusion matrix and learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from ser.atomic import atomic_write


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write a figure as a PNG atomically (no half-written picture) and free it."""
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Counts with row-normalised colours (each row is one true class's recall profile)."""
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    recall = matrix / rows
    size = 1.2 + 0.7 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="recall")
    ticks = range(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for i in ticks:
        for j in ticks:
            color = "white" if recall[i, j] > 0.5 else "black"
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", color=color)
    uar = float(np.mean(np.diag(recall)))
    ax.set_title(f"Confusion matrix (UAR {uar:.3f})")
    return save_figure(fig, path)


def plot_learning_curves(history: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Loss and UAR per epoch for train and val, from SERModule.history."""
    fig, (ax_loss, ax_uar) = plt.subplots(1, 2, figsize=(10, 3.8))
    for stage in ("train", "val"):
        for ax, metric in ((ax_loss, "loss"), (ax_uar, "uar")):
            values = history.get(f"{stage}/{metric}", [])
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=stage)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_uar.set(xlabel="epoch", ylabel="UAR", title="Unweighted average recall", ylim=(0, 1))
    for ax in (ax_loss, ax_uar):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)

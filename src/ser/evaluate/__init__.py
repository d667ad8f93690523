"""Scoring and pictures: UAR/WA/F1, confusion matrices, per-class reports, learning curves."""

from ser.evaluate.metrics import scores, write_evaluation
from ser.evaluate.plots import plot_confusion_matrix, plot_learning_curves

__all__ = ["plot_confusion_matrix", "plot_learning_curves", "scores", "write_evaluation"]

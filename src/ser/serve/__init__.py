"""Using a trained model: load it, predict on audio, stream, export and serve."""

from ser.serve.model import Prediction, Recognizer, load_recognizer

__all__ = ["Prediction", "Recognizer", "load_recognizer"]

"""Using a trained model: load it, predict on audio, stream, export and serve."""

from ser.inference.recognizer import Prediction, Recognizer, load_recognizer

__all__ = ["Prediction", "Recognizer", "load_recognizer"]

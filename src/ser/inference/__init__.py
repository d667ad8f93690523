"""Using a trained model, below both serving and Emo-RL: a Recognizer loaded by reference
(checkpoint, run id, `models:/name@alias`), streaming posteriors chunk by chunk, and a trained
early-decision policy applied to them."""

from ser.inference.recognizer import Prediction, Recognizer, load_recognizer

__all__ = ["Prediction", "Recognizer", "load_recognizer"]

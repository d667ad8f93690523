"""A trained model as an `mlflow.pyfunc` model: raw audio rows in, label and probabilities out.

`ser.tracking.registry.register_model` saves this class as code (MLflow "models from code"),
with the checkpoint as the model's artifact; the input contract is described there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from ser.errors import SerError
from ser.inference.recognizer import Recognizer
from ser.tracking.registry import CHECKPOINT_KEY, ENCODER_ARTIFACT


class SERPyfunc(PythonModel):
    """mlflow.pyfunc model: raw audio rows in, label and class probabilities out."""

    def load_context(self, context: Any) -> None:
        # A bundled copy of the pretrained encoder, where the model was registered with one.
        encoder = context.artifacts.get(ENCODER_ARTIFACT)
        self.recognizer = Recognizer.from_checkpoint(context.artifacts[CHECKPOINT_KEY], encoder)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        frame = pd.DataFrame(model_input)
        missing = {"audio", "sample_rate"} - set(frame.columns)
        if missing:
            raise MlflowException.invalid_parameter_value(
                f"input needs the columns audio (list of float samples) and sample_rate (Hz); "
                f"missing {sorted(missing)}"
            )
        names = self.recognizer.class_names
        rows = []
        for i, (audio, rate) in enumerate(zip(frame["audio"], frame["sample_rate"], strict=True)):
            samples = np.asarray(audio, dtype=np.float32)
            try:
                pred = self.recognizer.predict_array(samples, int(rate), f"row {i}")
            except SerError as err:
                raise MlflowException.invalid_parameter_value(str(err)) from None
            rows.append({"label": pred.label, **{c: pred.probabilities[c] for c in names}})
        return pd.DataFrame(rows, columns=["label", *names])

"""The registered model's MLflow form: a pyfunc around the Keras model, so every consumer (the
evaluate gate, batch scoring) calls ``mlflow.pyfunc.load_model(uri).predict(feature_frame)`` with
the feature table's own columns (column signature, checked by MLflow) and gets a ``propensity``
column back. The Keras model itself (preprocessing included) is the artifact ``keras_model``.

mlflow.tensorflow's flavor only accepts tensor signatures, which would push the column -> tensor
conversion (strings included) onto every caller; this wrapper does it once.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from model_steps.training import CATEGORICAL, INPUT_COLUMNS, NUMERIC

KERAS_ARTIFACT = "keras_model"


def to_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"input frame lacks feature column(s) {missing}")
    out = {c: frame[c].to_numpy(dtype=np.float32).reshape(-1, 1) for c in NUMERIC}
    out |= {c: frame[c].astype(str).to_numpy().reshape(-1, 1) for c in CATEGORICAL}
    return out


class PropensityModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import tensorflow as tf

        self.model = tf.keras.models.load_model(context.artifacts[KERAS_ARTIFACT], compile=False)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        scores = self.model.predict(to_inputs(frame), verbose=0, batch_size=8192).ravel()
        return pd.DataFrame({"propensity": scores.astype(np.float64)}, index=frame.index)

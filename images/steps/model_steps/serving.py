"""A registered model's MLflow form, the same for every model: a pyfunc around the Keras network,
so every consumer (the evaluate gate, batch scoring) calls
``mlflow.pyfunc.load_model(uri).predict(feature_frame)`` with the feature table's own columns
(column signature, checked by MLflow) and gets the task's output column back (``score`` for
classification, ``prediction`` for regression: mlplatform_contract.tasks).

Two artifacts: ``keras_model`` (the network, preprocessing included) and ``io`` (which columns go
into which input, and the output's name), so loading needs neither the model package nor its code.
mlflow.tensorflow's flavor only accepts tensor signatures, which would push the column -> tensor
conversion (strings included) onto every caller; this wrapper does it once.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from model_steps.training import NUMERIC_INPUT

KERAS_ARTIFACT = "keras_model"
IO_ARTIFACT = "io"


def io_spec(model: Any) -> dict[str, Any]:
    """What the served model needs to know about a model_steps Model."""
    return {
        "numeric": list(model.numeric_features),
        "categorical": list(model.categorical_features),
        "output": model.output_column,
    }


def to_inputs(frame: pd.DataFrame, io: dict[str, Any]) -> dict[str, np.ndarray]:
    missing = [c for c in (*io["numeric"], *io["categorical"]) if c not in frame.columns]
    if missing:
        raise ValueError(f"input frame lacks feature column(s) {missing}")
    out = {
        NUMERIC_INPUT: frame[io["numeric"]]
        .to_numpy(dtype=np.float32)
        .reshape(-1, len(io["numeric"]))
    }
    for c in io["categorical"]:
        out[c] = frame[c].to_numpy().astype(str).reshape(-1, 1)
    return out


class StepModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import tensorflow as tf

        self.model = tf.keras.models.load_model(context.artifacts[KERAS_ARTIFACT], compile=False)
        with open(context.artifacts[IO_ARTIFACT]) as fh:
            self.io = json.load(fh)

    # no type hints on purpose: MLflow 3 would read them as the input schema; the logged
    # column signature is the schema
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = pd.DataFrame(model_input)
        out = self.model.predict(to_inputs(frame, self.io), verbose=0, batch_size=8192).ravel()
        return pd.DataFrame({self.io["output"]: out.astype(np.float64)}, index=frame.index)

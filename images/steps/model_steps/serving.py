"""The image's own serving code, the same for every model: every consumer (the evaluate gate,
batch scoring) calls ``model_store.load_version(name, version).predict(feature_frame)`` with the
feature table's own columns and gets the task's output column back (``score`` for classification,
``prediction`` for regression: mlplatform_contract.tasks).

The stored model is data (model_store: weights in a fixed format, ``io.json`` saying which columns
go into which input and the output's name, a manifest with digests); this module is the code that
turns columns into the network's inputs, so loading needs neither the model package nor any code
from the artifact store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from model_steps.training import NUMERIC_INPUT


def io_spec(model: Any) -> dict[str, Any]:
    """What the served model needs to know about a model_steps Model (model_store.IoSpec)."""
    io = {
        "numeric": list(model.numeric_features),
        "categorical": list(model.categorical_features),
        "output": model.output_column,
    }
    if model.class_columns:
        io |= {"classes": list(model.classes), "scores": list(model.class_columns)}
    return io


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


class KerasPredictor:
    """The image's wrapper around a loaded Keras network (model_store's ``keras-v3`` format):
    a frame of feature columns in, a frame with the task's output column out."""

    def __init__(self, net: Any, io: Any) -> None:
        self.model = net
        self.io = io.model_dump() if hasattr(io, "model_dump") else dict(io)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(frame)
        out = self.model.predict(to_inputs(frame, self.io), verbose=0, batch_size=8192).ravel()
        return pd.DataFrame({self.io["output"]: out.astype(np.float64)}, index=frame.index)


def tabular_frame(frame: pd.DataFrame, io: dict[str, Any]) -> pd.DataFrame:
    """The input columns as a tree-model framework takes them: numeric as float64, categoricals as
    pandas categories of their string values (LightGBM keeps the training categories in its model
    file and maps a scored frame's values onto them; an unseen value is missing). The same function
    builds what ``Model.fit`` gets and what the served model predicts on."""
    missing = [c for c in (*io["numeric"], *io["categorical"]) if c not in frame.columns]
    if missing:
        raise ValueError(f"input frame lacks feature column(s) {missing}")
    out = {c: frame[c].to_numpy(dtype=np.float64) for c in io["numeric"]}
    for c in io["categorical"]:  # strings as they are (a copy less per chunk), anything else as str
        column = frame[c] if pd.api.types.is_string_dtype(frame[c]) else frame[c].astype(str)
        out[c] = pd.Categorical(column)
    return pd.DataFrame(out, index=frame.index)


class LightGBMPredictor:
    """The image's wrapper around a LightGBM Booster (model_store's ``lightgbm-text`` format): a
    frame of feature columns in, a frame with the task's output column out."""

    def __init__(self, booster: Any, io: Any) -> None:
        self.model = booster
        self.io = io.model_dump() if hasattr(io, "model_dump") else dict(io)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(frame)
        out = np.asarray(self.model.predict(tabular_frame(frame, self.io)), dtype=np.float64)
        if self.io.get("classes"):
            if out.ndim == 1 and len(self.io["classes"]) == 2:  # two classes, a binary objective
                out = np.column_stack([1.0 - out, out])
            return class_frame(out.reshape(len(frame), -1), self.io, frame.index)
        return pd.DataFrame({self.io["output"]: out.ravel()}, index=frame.index)


class SklearnPredictor:
    """The image's wrapper around a scikit-learn estimator (model_store's ``sklearn-skops``
    format): a classifier's probabilities (the positive class's, or one column per class), a
    regressor's predictions."""

    def __init__(self, estimator: Any, io: Any) -> None:
        self.model = estimator
        self.io = io.model_dump() if hasattr(io, "model_dump") else dict(io)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(frame)
        x = tabular_frame(frame, self.io)
        if not hasattr(self.model, "predict_proba"):
            out = np.asarray(self.model.predict(x), dtype=np.float64)
            return pd.DataFrame({self.io["output"]: out.ravel()}, index=frame.index)
        proba = np.asarray(self.model.predict_proba(x), dtype=np.float64)
        if self.io.get("classes"):
            return class_frame(proba, self.io, frame.index)
        return pd.DataFrame({self.io["output"]: proba[:, 1]}, index=frame.index)


class XGBoostPredictor:
    """The image's wrapper around an XGBoost Booster (model_store's ``xgboost-json`` format): a
    frame of feature columns in, a frame with the task's output column out (the same columns as
    LightGBMPredictor's). Categoricals go in as pandas categories (serving.tabular_frame) set to the
    training categories the booster keeps, so an unseen value is missing (XGBoost's own re-coding
    maps it onto a training category). After early stopping it predicts with the trees up to the
    best iteration, as XGBoost's scikit-learn predict does."""

    def __init__(self, booster: Any, io: Any) -> None:
        self.model = booster
        self.io = io.model_dump() if hasattr(io, "model_dump") else dict(io)
        self.categories = xgboost_categories(booster, self.io["categorical"])
        best = booster.attr("best_iteration")
        self.iteration_range = (0, 0) if best is None else (0, int(best) + 1)  # (0, 0): every tree

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(frame)
        x = tabular_frame(frame, self.io)
        for column, categories in self.categories.items():
            x[column] = x[column].cat.set_categories(categories)
        out = self.model.inplace_predict(x, iteration_range=self.iteration_range)
        out = np.asarray(out, dtype=np.float64)
        if self.io.get("classes"):
            if out.ndim == 1 and len(self.io["classes"]) == 2:  # two classes, binary:logistic
                out = np.column_stack([1.0 - out, out])
            return class_frame(out.reshape(len(frame), -1), self.io, frame.index)
        return pd.DataFrame({self.io["output"]: out.ravel()}, index=frame.index)


def xgboost_categories(booster: Any, categorical: list[str]) -> dict[str, list[str]]:
    """Each categorical column's training categories, as the booster keeps them (XGBoost >= 3.1
    stores them in the model file); a model without them for a categorical column is refused (its
    codes would depend on the categories of each scored chunk)."""
    kept = {} if booster.get_categories().empty() else {
        name: values.to_pylist()
        for name, values in booster.get_categories(export_to_arrow=True).to_arrow()
        if values is not None
    }  # fmt: skip
    if missing := [c for c in categorical if c not in kept]:
        raise ValueError(f"the XGBoost model keeps no training categories for {missing} (fit "
                         "with enable_categorical=True on pandas categories, XGBoost >= 3.1)")  # fmt: skip
    return {c: kept[c] for c in categorical}


def class_frame(probabilities: np.ndarray, io: dict[str, Any], index: Any) -> pd.DataFrame:
    """Several classes: each class's probability column, then the output (the likeliest class)."""
    classes = np.asarray(io["classes"], dtype=object)
    if probabilities.shape[1] != len(classes):
        raise ValueError(f"the model gives {probabilities.shape[1]} class probabilities, its io "
                         f"names {len(classes)} classes")  # fmt: skip
    out = {name: probabilities[:, i] for i, name in enumerate(io["scores"])}
    out[io["output"]] = classes[probabilities.argmax(axis=1)]
    return pd.DataFrame(out, index=index)


def predictions(served: Any, model: Any, frame: pd.DataFrame) -> np.ndarray:
    """What the gate's metrics take from a served model: the output column, or for several classes
    the (n, k) matrix of their probabilities."""
    out = served.predict(frame[list(model.input_columns)])
    if model.class_columns:
        return out[list(model.class_columns)].to_numpy(dtype=np.float64)
    return out[model.output_column].to_numpy()

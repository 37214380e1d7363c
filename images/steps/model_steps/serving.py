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

from collections.abc import Iterator, Mapping, Sequence
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


# Rows per Keras call: one ``predict_on_batch`` per chunk of the score step (its default 200k), at
# most this many rows at once (bounded memory). Measured on the example propensity network, 400k
# rows: ``predict(batch_size=8192)`` 0.55-0.74 s, ``predict_on_batch`` 0.19-0.37 s with the same
# outputs (``predict`` builds a tf.data pipeline and retraces per call: 75 ms of set-up per chunk).
KERAS_BATCH_ROWS = 262_144


def _missing_columns(frame: pd.DataFrame, io: dict[str, Any]) -> None:
    missing = [c for c in (*io["numeric"], *io["categorical"]) if c not in frame.columns]
    if missing:
        raise ValueError(f"input frame lacks feature column(s) {missing}")


def _string_input(column: pd.Series) -> Any:
    """One categorical column as the network's [n, 1] string input, each value as ``str()`` gives
    it. The column's few distinct values are converted, then gathered by code (in TensorFlow):
    not one Python string per row. A column with missing values takes the per-row conversion
    (``None`` and NaN stay the strings ``'None'`` and ``'nan'``, as before)."""
    import tensorflow as tf

    codes, uniques = pd.factorize(column)
    if len(codes) == 0 or codes.min() < 0:
        return column.to_numpy().astype(str).reshape(-1, 1)
    table = tf.constant(np.asarray(uniques, dtype=str))
    return tf.reshape(tf.gather(table, codes.astype(np.int32, copy=False)), (-1, 1))


def to_inputs(frame: pd.DataFrame, io: dict[str, Any]) -> dict[str, Any]:
    """Feature columns -> the network's inputs: ``numeric`` [n, k] float32 (one C-contiguous
    matrix in the io's order), one [n, 1] string tensor per categorical."""
    _missing_columns(frame, io)
    numeric = np.ascontiguousarray(
        frame[io["numeric"]].to_numpy(dtype=np.float32).reshape(-1, len(io["numeric"]))
    )
    return {NUMERIC_INPUT: numeric} | {c: _string_input(frame[c]) for c in io["categorical"]}


def _batches(inputs: dict[str, Any], rows: int, step: int) -> Iterator[dict[str, Any]]:
    """The inputs whole, or in slices of ``step`` rows."""
    if rows <= step:
        yield inputs
        return
    for i in range(0, rows, step):
        yield {name: value[i : i + step] for name, value in inputs.items()}


class FramePredictor:
    """What every served model is: ``predict(frame) = outputs(inputs(frame), frame.index)``. The
    two halves are public so that the score step builds the framework's inputs for the next chunk
    in its reading thread while this chunk is predicted: on two cores the conversion would
    otherwise leave one idle between predictions."""

    io: dict[str, Any]

    def __init__(self, model: Any, io: Any) -> None:
        self.model = model
        self.io = io.model_dump() if hasattr(io, "model_dump") else dict(io)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(frame)
        return self.outputs(self.inputs(frame), frame.index)

    def inputs(self, frame: pd.DataFrame) -> Any:
        """The feature columns as the framework takes them."""
        raise NotImplementedError

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        """The framework's predictions on ``inputs`` as the task's output frame on ``index``."""
        raise NotImplementedError


class KerasPredictor(FramePredictor):
    """The image's wrapper around a loaded Keras network (model_store's ``keras-v3`` format):
    a frame of feature columns in, a frame with the task's output column out."""

    def inputs(self, frame: pd.DataFrame) -> Any:
        return to_inputs(frame, self.io)

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        rows = len(index)
        parts = [
            np.asarray(self.model.predict_on_batch(batch)).reshape(-1)
            for batch in (_batches(inputs, rows, KERAS_BATCH_ROWS) if rows else ())
        ]
        out = np.concatenate(parts) if parts else np.empty(0)
        return pd.DataFrame(
            {self.io["output"]: out.astype(np.float64, copy=False)}, index=index, copy=False
        )


def tabular_frame(frame: pd.DataFrame, io: dict[str, Any]) -> pd.DataFrame:
    """The input columns as a tree-model framework takes them: numeric as float64, categoricals as
    pandas categories of their string values (LightGBM keeps the training categories in its model
    file and maps a scored frame's values onto them; an unseen value is missing). The same function
    builds what ``Model.fit`` gets and what the served model predicts on."""
    _missing_columns(frame, io)
    out = {c: frame[c].to_numpy(dtype=np.float64) for c in io["numeric"]}
    for c in io["categorical"]:
        out[c] = pd.Categorical(_category_values(frame[c]))
    return pd.DataFrame(out, index=frame.index)


def _category_values(column: pd.Series) -> pd.Series:
    """A categorical column's values as tabular_frame takes them: strings (and a frame's pandas
    categories of strings) as they are, anything else as ``str()`` gives it."""
    return column if pd.api.types.is_string_dtype(column) else column.astype(str)


def category_codes(column: pd.Series, categories: pd.Index) -> np.ndarray:
    """Each value's position in ``categories`` (a model's training categories), -1 where it is not
    one of them or missing: what ``pd.Categorical(values).set_categories(categories).codes`` gives,
    in one hash lookup per row (a pandas categorical column: per category). Python objects (the
    strings Arrow gives) are looked up as they are, and only a column with a miss is scanned for
    values that are not strings (pandas' check reads every row: 1 ms per 200k)."""
    if column.dtype == object:
        codes = categories.get_indexer(column.to_numpy())
        if (codes >= 0).all() or pd.api.types.is_string_dtype(column):
            return codes
    values = _category_values(column)
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = np.append(categories.get_indexer(values.cat.categories), -1)  # [-1]: missing
        return lookup[values.cat.codes.to_numpy()]
    return categories.get_indexer(values.to_numpy())


def tree_matrix(frame: pd.DataFrame, io: dict[str, Any], categories: list[Any]) -> np.ndarray:
    """The input columns as a LightGBM booster takes a pandas frame, built directly: one
    C-contiguous float64 matrix, numeric columns then each categorical's code in the booster's
    training ``categories`` (NaN: missing or unseen), as ``Booster.predict`` converts
    ``tabular_frame``'s frame (pandas categories -> codes, -1 -> NaN, one float64 matrix)."""
    _missing_columns(frame, io)
    k = len(io["numeric"])
    out = np.empty((len(frame), k + len(io["categorical"])), dtype=np.float64)
    if k:
        out[:, :k] = frame[io["numeric"]].to_numpy(dtype=np.float64)
    for j, (c, cats) in enumerate(zip(io["categorical"], categories, strict=True)):
        codes = category_codes(frame[c], pd.Index(cats))
        out[:, k + j] = np.where(codes >= 0, codes, np.nan)
    return out


class LightGBMPredictor(FramePredictor):
    """The image's wrapper around a LightGBM Booster (model_store's ``lightgbm-text`` format): a
    frame of feature columns in, a frame with the task's output column out."""

    def inputs(self, frame: pd.DataFrame) -> Any:
        """tree_matrix when the booster keeps its training categories for every categorical (a
        booster fitted on tabular_frame's frames does), else tabular_frame's frame."""
        categories = self.model.pandas_categorical
        cats = self.io["categorical"]
        if len(frame) and (not cats or (categories and len(categories) == len(cats))):
            return tree_matrix(frame, self.io, categories or [])
        return tabular_frame(frame, self.io)

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        return output_frame(self.model.predict(inputs), self.io, index)


def output_frame(predicted: Any, io: dict[str, Any], index: pd.Index) -> pd.DataFrame:
    """A model's predictions as the task's output frame: the value, or for several classes each
    one's probability (one probability per row read as two classes: 1 - p, p) and the class."""
    out = np.asarray(predicted, dtype=np.float64)
    if io.get("classes"):
        if out.ndim == 1 and len(io["classes"]) == 2:  # two classes, a binary objective
            out = np.column_stack([1.0 - out, out])
        return class_frame(out.reshape(len(index), -1), io, index)
    return pd.DataFrame({io["output"]: out.ravel()}, index=index)


class SklearnPredictor(FramePredictor):
    """The image's wrapper around a scikit-learn estimator (model_store's ``sklearn-skops``
    format): a classifier's probabilities (the positive class's, or one column per class), a
    regressor's predictions."""

    def inputs(self, frame: pd.DataFrame) -> Any:
        return tabular_frame(frame, self.io)

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        if not hasattr(self.model, "predict_proba"):
            out = np.asarray(self.model.predict(inputs), dtype=np.float64)
            return pd.DataFrame({self.io["output"]: out.ravel()}, index=index)
        proba = np.asarray(self.model.predict_proba(inputs), dtype=np.float64)
        if self.io.get("classes"):
            return class_frame(proba, self.io, index)
        return pd.DataFrame({self.io["output"]: proba[:, 1]}, index=index)


class XGBoostPredictor(FramePredictor):
    """The image's wrapper around an XGBoost Booster (model_store's ``xgboost-json`` format): a
    frame of feature columns in, a frame with the task's output column out (the same columns as
    LightGBMPredictor's). Categoricals go in as pandas categories (serving.tabular_frame) set to the
    training categories the booster keeps, so an unseen value is missing (XGBoost's own re-coding
    maps it onto a training category). After early stopping it predicts with the trees up to the
    best iteration, as XGBoost's scikit-learn predict does."""

    def __init__(self, booster: Any, io: Any) -> None:
        super().__init__(booster, io)
        self.categories = xgboost_categories(booster, self.io["categorical"])
        best = booster.attr("best_iteration")
        self.iteration_range = (0, 0) if best is None else (0, int(best) + 1)  # (0, 0): every tree

    def inputs(self, frame: pd.DataFrame) -> Any:
        x = tabular_frame(frame, self.io)
        for column, categories in self.categories.items():
            x[column] = x[column].cat.set_categories(categories)
        return x

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        predicted = self.model.inplace_predict(inputs, iteration_range=self.iteration_range)
        return output_frame(predicted, self.io, index)


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


def module_arrays(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The input columns as a PyTorch module takes them (model_api.ModuleInputs): one C-contiguous
    [n, k] float32 matrix of the numeric columns, one [n, c] int64 matrix of each categorical's
    position in its vocabulary (``len(vocabulary)``: not in it, or missing). The same function
    builds what a ``fit`` trains on and what the served module predicts on."""
    _missing_columns(frame, {"numeric": list(numeric), "categorical": list(categorical)})
    x = np.ascontiguousarray(
        frame[list(numeric)].to_numpy(dtype=np.float32).reshape(-1, len(numeric))
    )
    codes = np.empty((len(frame), len(categorical)), dtype=np.int64)
    for j, (column, vocabulary) in enumerate(categorical.items()):
        found = category_codes(frame[column], pd.Index(vocabulary))
        codes[:, j] = np.where(found >= 0, found, len(vocabulary))
    return x, codes


# Rows per forward of a served PyTorch module. Measured on the benchmark's MLP (two layers of 64),
# 1M rows on an idle 2-core machine: 0.59 s in forwards of 262,144 rows, 0.26 s of 65,536, 0.20 s
# of 8,192-16,384 (the activations stay in the CPU's cache), 0.22 s of 4,096.
TORCH_BATCH_ROWS = 8_192


def torch_threads() -> int:
    """The cores this process may use (its CPU affinity, as the Keras ranks share them): PyTorch's
    default counts the machine's, which oversubscribes a pod limited to fewer."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class TorchPredictor(FramePredictor):
    """The image's wrapper around a PyTorch module (model_store's ``pytorch-safetensors`` format,
    its weights loaded into the architecture of the model's own code): a frame of feature columns
    in (module_arrays, the vocabularies of ``inputs``), the task's output columns out, as the
    other predictors give them. The module runs in eval mode under ``torch.inference_mode``,
    TORCH_BATCH_ROWS rows per forward; the sigmoid
    (binary) or softmax (classes) is the platform's, a regression's value is served as given."""

    def __init__(self, module: Any, io: Any, inputs: Any, task: str) -> None:
        import torch

        super().__init__(module.eval(), io)
        self.module_inputs, self.task = inputs, task
        if torch.get_num_threads() > (cores := torch_threads()):
            torch.set_num_threads(cores)

    def inputs(self, frame: pd.DataFrame) -> Any:
        import torch

        x, codes = module_arrays(frame, self.io["numeric"], self.module_inputs.categorical)
        return torch.from_numpy(x), torch.from_numpy(codes)

    def outputs(self, inputs: Any, index: pd.Index) -> pd.DataFrame:
        out = self.forward(*inputs)
        if out.shape[1] != 1 and not self.io.get("classes"):
            raise ValueError(f"the module gives {out.shape[1]} outputs per row, its task one")
        # one output (a sigmoid's probability, two classes read as 1 - p, p; or a value), or one
        # probability per class: as a booster's predictions are read
        return output_frame(out[:, 0] if out.shape[1] == 1 else out, self.io, index)

    def forward(self, x: Any, codes: Any) -> np.ndarray:
        """The module on the inputs, TORCH_BATCH_ROWS rows at a time: [n, outputs] float64, the
        sigmoid (one logit) or softmax (several) applied unless the task is a regression."""
        import torch

        parts = []
        with torch.inference_mode():
            for i in range(0, len(x), TORCH_BATCH_ROWS):
                y = self.model(x[i : i + TORCH_BATCH_ROWS], codes[i : i + TORCH_BATCH_ROWS])
                y = y.reshape(len(y), -1).double()
                if self.task != "regression":
                    y = torch.softmax(y, dim=1) if y.shape[1] > 1 else torch.sigmoid(y)
                parts.append(y.numpy())
        width = len(self.io.get("classes") or ()) or 1
        return np.concatenate(parts) if parts else np.empty((0, width))


def class_frame(probabilities: np.ndarray, io: dict[str, Any], index: Any) -> pd.DataFrame:
    """Several classes: each class's probability column, then the output (the likeliest class, a
    pandas categorical of the class names: no Python string per row, and the score step writes
    its codes as they are)."""
    classes = io["classes"]
    if probabilities.shape[1] != len(classes):
        raise ValueError(f"the model gives {probabilities.shape[1]} class probabilities, its io "
                         f"names {len(classes)} classes")  # fmt: skip
    out: dict[str, Any] = {name: probabilities[:, i] for i, name in enumerate(io["scores"])}
    out[io["output"]] = pd.Categorical.from_codes(probabilities.argmax(axis=1), categories=classes)
    return pd.DataFrame(out, index=index)


def predictions(served: Any, model: Any, frame: pd.DataFrame) -> np.ndarray:
    """What the gate's metrics take from a served model: the output column, or for several classes
    the (n, k) matrix of their probabilities."""
    out = served.predict(frame[list(model.input_columns)])
    if model.class_columns:
        return out[list(model.class_columns)].to_numpy(dtype=np.float64)
    return out[model.output_column].to_numpy()

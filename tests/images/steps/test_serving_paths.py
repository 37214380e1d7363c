"""The served models' fast input paths (model_steps.serving) predict as the framework's own
predict on the same frame: Keras's ``Model.predict`` on the network's inputs, LightGBM's
``Booster.predict`` on the frame it takes (tabular_frame), for binary, regression and several
classes; with strings as Python objects (a frame from pandas) or as pandas categories (what the
score step reads), unseen and missing values, and chunked Keras calls. The score step's output
equals the served model's predictions on the frame pandas reads. No timings here
(benchmarks/bench_score.py measures them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform_contract.settings import CustomerSettings
from model_steps import lake, model_store, serving
from model_steps.model_api import ModelContext
from model_steps.model_store import IoSpec
from model_steps.serving import (
    KerasPredictor,
    LightGBMPredictor,
    category_codes,
    io_spec,
    tabular_frame,
)

IO = {"numeric": ["x1", "x2"], "categorical": ["colour", "size"], "output": "score"}
CLASSES = ["email", "sms", "app"]
IO3 = IO | {"output": "predicted_class", "classes": CLASSES,
            "scores": [f"score_{c}" for c in CLASSES]}  # fmt: skip


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x1": rng.normal(size=n), "x2": rng.integers(0, 9, n),
        "colour": rng.choice(["red", "green", "blue"], n), "size": rng.choice(["S", "M", "L"], n),
    })  # fmt: skip


def _variants(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The same rows as pandas holds them, as the score step reads them (categories, in another
    order and with an unused one), with values unseen at training and with missing ones."""
    unseen = frame.copy()
    unseen.loc[:4, "colour"] = "purple"
    missing = unseen.copy()
    missing.loc[5:9, "size"] = None
    missing.loc[10:12, "x1"] = np.nan
    as_category = unseen.assign(
        colour=pd.Categorical(unseen["colour"], categories=["red", "purple", "green", "blue", "x"]),
        size=pd.Categorical(unseen["size"], categories=["S", "M", "L"]),
    )
    missing_category = missing.assign(size=missing["size"].astype("category"))
    return {"objects": unseen, "missing": missing, "categories": as_category,
            "missing_categories": missing_category, "reversed": unseen.iloc[::-1]}  # fmt: skip


# ---------------------------------------------------------------- LightGBM


def _booster(objective: str, seed: int = 0) -> Any:
    lgb = pytest.importorskip("lightgbm")
    frame = _frame(1500, seed)
    x = tabular_frame(frame, IO)
    signal = x["x1"] + (frame["colour"] == "red") * 1.5 - (frame["size"] == "S")
    y = {"binary": (signal > 0.5).astype(int), "regression": signal * 3.0 + 1.0,
         "multiclass": np.digitize(signal, [0.0, 1.0])}[objective]  # fmt: skip
    params = {"objective": objective, "verbose": -1, "num_leaves": 7, "seed": seed}
    params |= {"num_class": 3} if objective == "multiclass" else {}
    return lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=25)


@pytest.mark.parametrize("objective", ["binary", "regression", "multiclass"])
def test_lightgbm_predicts_exactly_as_booster_predict_on_tabular_frame(objective) -> None:
    booster = _booster(objective)
    io = IO3 if objective == "multiclass" else IO
    served = LightGBMPredictor(booster, io)
    for name, frame in _variants(_frame(300, 7)).items():
        want = booster.predict(tabular_frame(frame, io))  # the framework's own predict
        got = served.predict(frame)
        assert list(got.index) == list(frame.index), name
        if objective == "multiclass":
            np.testing.assert_array_equal(got[io["scores"]].to_numpy(), want, err_msg=name)
            assert (got["predicted_class"] == np.array(CLASSES)[want.argmax(1)]).all(), name
        else:
            np.testing.assert_array_equal(got["score"].to_numpy(), want, err_msg=name)


def test_a_booster_without_its_training_categories_takes_the_frame_path() -> None:
    """A booster fitted on a plain matrix keeps no pandas categories: the served model gives it
    tabular_frame's frame, as before."""
    lgb = pytest.importorskip("lightgbm")
    frame = _frame(600, 3)
    codes = np.column_stack([tabular_frame(frame, IO)[c].cat.codes for c in IO["categorical"]])
    x = np.column_stack([frame[IO["numeric"]].to_numpy(float), codes])
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(
        x, label=(frame["x1"] > 0).astype(int), categorical_feature=[2, 3]), num_boost_round=5)  # fmt: skip
    assert booster.pandas_categorical is None
    want = booster.predict(tabular_frame(frame, IO))
    np.testing.assert_array_equal(LightGBMPredictor(booster, IO).predict(frame)["score"], want)


def test_category_codes_are_the_training_categories_codes() -> None:
    categories = pd.Index(["blue", "green", "red"])
    for column in _variants(_frame(50, 1)).values():
        for c in IO["categorical"]:
            values = column[c]
            want = (
                pd.Categorical(
                    values if pd.api.types.is_string_dtype(values) else values.astype(str)
                )
                .set_categories(categories)
                .codes
            )
            np.testing.assert_array_equal(category_codes(values, categories), want)
    ints = pd.Series([1, 2, 3, None], dtype=object)  # not strings: as str() gives them
    np.testing.assert_array_equal(category_codes(ints, pd.Index(["1", "3", "None"])), [0, -1, 1, 2])


def test_xgboost_and_sklearn_take_the_score_steps_categories_as_their_values() -> None:
    """The score step now hands the served model pandas categories in the file's order (not
    Python strings): XGBoost and scikit-learn predict on them as on the same values as strings."""
    xgb = pytest.importorskip("xgboost")
    hgb = pytest.importorskip("sklearn.ensemble").HistGradientBoostingClassifier
    from model_steps.serving import SklearnPredictor, XGBoostPredictor

    frame = _frame(800, 2)
    x, y = tabular_frame(frame, IO), (frame["x1"] + (frame["colour"] == "red") > 0.5).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(x, y, enable_categorical=True), 10)  # fmt: skip
    served = [XGBoostPredictor(booster, IO), SklearnPredictor(hgb(max_iter=10).fit(x, y), IO)]
    rows = _variants(_frame(200, 9))
    for model in served:
        want = model.predict(rows["objects"])["score"].to_numpy()
        np.testing.assert_array_equal(model.predict(rows["categories"])["score"], want)


def test_torch_takes_every_form_of_the_rows_as_its_vocabulary_codes(monkeypatch) -> None:
    """TorchPredictor's inputs (serving.module_arrays): each categorical's position in its
    vocabulary, ``len(vocabulary)`` for an unseen or missing value, whatever form the rows come
    in; its output equals the module's own forward, also when the forward is chunked."""
    torch = pytest.importorskip("torch")
    from model_steps.model_api import ModuleInputs
    from model_steps.serving import TorchPredictor

    vocab = {"colour": ("red", "green", "blue"), "size": ("S", "M", "L")}
    inputs = ModuleInputs(("x1", "x2"), vocab, 1)
    torch.manual_seed(0)
    emb = torch.nn.Embedding(4, 2)
    lin = torch.nn.Linear(2 + 4, 1)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.lin = emb, lin

        def forward(self, x, codes):  # type: ignore[no-untyped-def]
            return self.lin(torch.cat([x, self.emb(codes[:, 0]), self.emb(codes[:, 1])], 1))

    served = TorchPredictor(Net(), IO, inputs, "binary_classification")
    rows = _variants(_frame(200, 9))
    for name, frame in rows.items():
        codes = np.column_stack([pd.Categorical(frame[c].astype(object), categories=list(v)).codes
                                 for c, v in vocab.items()]).astype(np.int64)  # fmt: skip
        codes[codes < 0] = 3
        x = torch.from_numpy(frame[["x1", "x2"]].to_numpy(np.float32))
        with torch.no_grad():
            want = torch.sigmoid(Net()(x, torch.from_numpy(codes))).double().numpy()[:, 0]
        np.testing.assert_array_equal(served.inputs(frame)[1].numpy(), codes, err_msg=name)
        np.testing.assert_allclose(served.predict(frame)["score"], want, rtol=1e-6, err_msg=name)
    whole = served.predict(rows["objects"])["score"]
    monkeypatch.setattr(serving, "TORCH_BATCH_ROWS", 7)  # chunked forward: the same outputs
    np.testing.assert_allclose(served.predict(rows["objects"])["score"], whole, rtol=1e-6)
    assert served.predict(rows["objects"].head(0)).empty


# ---------------------------------------------------------------- Keras


def _network(model: Any) -> Any:
    pytest.importorskip("tensorflow")
    from model_steps.training import build_model

    n = len(model.numeric_features)
    ctx = ModelContext(pipeline=model.name, customer="acme", data_date=None,  # type: ignore[arg-type]
                       lake_uri="", settings=model.settings(), platform=CustomerSettings())  # fmt: skip
    rng = np.random.default_rng(3)
    return build_model(model, ctx, rng.random(n), 1 + rng.random(n))


def _keras_frame(model: Any, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {c: rng.random(n) * 10 for c in model.numeric_features}
    data |= {
        c: rng.choice([*vocab, "unseen"], n) for c, vocab in model.categorical_features.items()
    }
    return pd.DataFrame(data)


def _keras_own_predict(net: Any, model: Any, frame: pd.DataFrame) -> np.ndarray:
    """Keras's predict on the network's inputs, converted row by row (the path before)."""
    inputs = {"numeric": frame[list(model.numeric_features)].to_numpy(dtype=np.float32)}
    inputs |= {
        c: frame[c].to_numpy().astype(str).reshape(-1, 1) for c in model.categorical_features
    }
    return net.predict(inputs, batch_size=8192, verbose=0).ravel()


@pytest.mark.parametrize("pipeline", ["customer_propensity", "next_spend"])
def test_keras_predicts_as_model_predict(pipeline, monkeypatch) -> None:
    """Binary (customer_propensity) and regression (next_spend) networks: one predict_on_batch per
    frame, or slices of KERAS_BATCH_ROWS rows, give Model.predict's outputs."""
    import importlib

    model = importlib.import_module(f"mlmodels.{pipeline}").MODEL
    net = _network(model)
    served = KerasPredictor(net, io_spec(model))
    frame = _keras_frame(model, 500, 5)
    first = next(iter(model.categorical_features))
    variants = {
        "objects": frame, "categories": frame.astype(dict.fromkeys(model.categorical_features, "category")),
        "missing": frame.assign(**{first: frame[first].where(frame.index % 7 > 0, None)}),
    }  # fmt: skip
    for name, rows in variants.items():
        want = _keras_own_predict(net, model, rows)
        got = served.predict(rows)
        assert (
            list(got.columns) == [model.output_column] and got[model.output_column].dtype == float
        )
        np.testing.assert_allclose(
            got[model.output_column], want, rtol=1e-6, atol=1e-7, err_msg=name
        )
    monkeypatch.setattr(serving, "KERAS_BATCH_ROWS", 64)
    np.testing.assert_allclose(served.predict(frame)[model.output_column],
                               _keras_own_predict(net, model, frame), rtol=1e-6, atol=1e-7)  # fmt: skip
    assert served.predict(frame.head(0)).shape == (0, 1)


# ---------------------------------------------------------------- the score step


def _feature_table(root: Path, model: Any, frame: pd.DataFrame, files: int) -> str:
    uri, attempt, names = f"file://{root}/features", "attempt=t", []
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), files)):
        part = frame.iloc[rows]
        names.append(f"part-{i:05d}.parquet")
        (root / "features" / attempt).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                       root / "features" / attempt / names[-1])  # fmt: skip
    lake.write_json_atomic(f"{uri}/_MANIFEST.json",
                           {"attempt": attempt, "files": names, "rows": len(frame)})  # fmt: skip
    return uri


def test_the_score_step_writes_the_served_models_predictions(tmp_path) -> None:
    """Categoricals read as the file's dictionaries: the scores equal the served model's
    predictions on the frame pandas reads (strings as objects), for several classes."""
    from mlmodels.preferred_channel import MODEL
    from model_steps.steps.score import score_table

    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"diner_id": [f"D{i:05d}" for i in range(2500)]})
    frame = frame.assign(**{c: rng.integers(0, 50, len(frame)) for c in MODEL.numeric_features})
    frame = frame.assign(**{c: rng.choice([*v, "other"], len(frame))
                            for c, v in MODEL.categorical_features.items()})  # fmt: skip
    io = io_spec(MODEL)
    x = tabular_frame(frame, io)
    params = {"objective": "multiclass", "num_class": len(MODEL.classes), "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, label=rng.integers(0, 5, len(x))), 10)
    folder = tmp_path / "model"
    manifest = model_store.save(folder, booster, fmt="lightgbm-text", model=MODEL.name,
                                task=MODEL.task, io=IoSpec(**io))  # fmt: skip
    served = model_store.load_dir(folder, manifest.digest, "test model")
    features = _feature_table(tmp_path, MODEL, frame, files=3)
    done = score_table(served, MODEL, features, f"file://{tmp_path}/scores", chunk_rows=600,
                       model_version="7")  # fmt: skip
    scores = pd.concat(pd.read_parquet(tmp_path / "scores" / done["attempt"] / f)
                       for f in done["files"])  # fmt: skip
    want = served.predict(frame[list(MODEL.input_columns)])
    assert list(scores["diner_id"]) == list(frame["diner_id"]) and len(done["files"]) == 6
    np.testing.assert_array_equal(scores[list(MODEL.class_columns)].to_numpy(),
                                  want[list(MODEL.class_columns)].to_numpy())  # fmt: skip
    assert list(scores["predicted_class"]) == list(want["predicted_class"])

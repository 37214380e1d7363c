"""The XGBoost format of model_steps.model_store (the Booster's own JSON, never pickle): a fitted
model round-trips and predicts exactly as XGBoost's own predict on the object in memory (binary,
several classes, regression, early stopping's best iteration), categoricals set to the training
categories (an unseen value is missing); a tampered file, a file that is not XGBoost JSON (a
pickle, UBJSON, other JSON), a booster that gives no class probabilities and one that keeps no
training categories are refused with the model, version and file named, before XGBoost parses
anything; an object that is not an XGBoost model is not saved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

xgb = pytest.importorskip("xgboost")

from model_store_helpers import copy_saved, reseal  # noqa: E402

from model_steps import model_store  # noqa: E402
from model_steps.model_store import IoSpec, ModelRefused  # noqa: E402
from model_steps.serving import XGBoostPredictor, tabular_frame  # noqa: E402

WHAT = "model m-acme v3 (run abc)"
IO = IoSpec(numeric=["x1", "x2"], categorical=["colour"], output="score")
CLASSES = IoSpec(numeric=["x1", "x2"], categorical=["colour"], output="predicted_class",
                 classes=["a", "b", "c"], scores=["score_a", "score_b", "score_c"])  # fmt: skip


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.integers(0, 9, n),
                          "colour": rng.choice(["red", "green", "blue"], n)})  # fmt: skip
    logit = 1.5 * frame["x1"] + (frame["colour"] == "red") * 2.0 - 1.0
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _fit(kind: str) -> tuple[object, pd.DataFrame]:
    frame, y = _frame(800, 1)
    x = tabular_frame(frame, IO.model_dump())
    common = {"n_estimators": 20, "max_depth": 3, "enable_categorical": True, "n_jobs": 1,
              "random_state": 0}  # fmt: skip
    if kind == "regression":
        return xgb.XGBRegressor(**common).fit(x, frame["x1"] * 2 + y), frame
    if kind == "classes":
        return xgb.XGBClassifier(**common).fit(x, np.digitize(frame["x1"], [-1, 1])), frame
    if kind == "early_stopping":
        clf = xgb.XGBClassifier(**{**common, "n_estimators": 200, "early_stopping_rounds": 3,
                                   "learning_rate": 0.5})  # fmt: skip
        hold, y_hold = _frame(300, 9)
        return clf.fit(x, y, eval_set=[(tabular_frame(hold, IO.model_dump()), y_hold)],
                       verbose=False), frame  # fmt: skip
    return xgb.XGBClassifier(**common).fit(x, y), frame


def _save(directory: Path, fitted: object, io: IoSpec, example: pd.DataFrame) -> str:
    manifest = model_store.save(directory, fitted, fmt="xgboost-json", model="m",
                                task="binary_classification", io=io, example=example.head(5))  # fmt: skip
    return manifest.digest


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, str]:
    fitted, frame = _fit("binary")
    directory = tmp_path_factory.mktemp("xgb") / "model"
    return directory, _save(directory, fitted, IO, frame)


@pytest.mark.parametrize("kind", ["binary", "classes", "regression", "early_stopping"])
def test_an_xgboost_model_round_trips_and_predicts_as_xgboost(tmp_path, kind) -> None:
    fitted, frame = _fit(kind)
    io = CLASSES if kind == "classes" else IO
    digest = _save(tmp_path / "model", fitted, io, frame)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "MANIFEST.json", "MLmodel", "io.json", "model.xgb.json"]  # fmt: skip
    served = model_store.load_dir(tmp_path / "model", digest, WHAT)
    assert isinstance(served, XGBoostPredictor)
    scored, _ = _frame(300, 2)
    x = tabular_frame(scored, IO.model_dump())
    got = served.predict(scored)
    if kind == "regression":
        want = {"score": fitted.predict(x)}
    elif kind == "classes":
        proba = fitted.predict_proba(x)
        want = {f"score_{c}": proba[:, i] for i, c in enumerate("abc")}
        assert list(got.columns) == ["score_a", "score_b", "score_c", "predicted_class"]
        assert (got["predicted_class"] == np.array(list("abc"))[proba.argmax(axis=1)]).all()
    else:
        want = {"score": fitted.predict_proba(x)[:, 1]}
        assert list(got.columns) == ["score"]
    for column, values in want.items():  # XGBoost predicts in float32; the platform in float64
        np.testing.assert_allclose(got[column].to_numpy(), values, rtol=1e-6)
    if kind == "early_stopping":  # the trees after the best iteration are stored, not used
        assert fitted.best_iteration + 1 < served.model.num_boosted_rounds()
        assert served.iteration_range == (0, fitted.best_iteration + 1)


def test_categoricals_are_the_training_categories_and_an_unseen_value_is_missing(saved) -> None:
    served = model_store.load_dir(*saved, WHAT)
    assert served.categories == {"colour": ["blue", "green", "red"]}
    frame, _ = _frame(300, 2)
    whole = served.predict(frame)["score"].to_numpy()
    reds = frame[frame["colour"] == "red"]  # a chunk holding one category only: its code is 0
    np.testing.assert_allclose(served.predict(reds)["score"].to_numpy(),
                               whole[(frame["colour"] == "red").to_numpy()], rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(served.predict(frame.iloc[::-1])["score"].to_numpy(), whole[::-1],
                               rtol=1e-12)  # fmt: skip
    unseen = frame.assign(colour="purple")  # XGBoost alone would read it as a training category
    missing = tabular_frame(frame, IO.model_dump())
    missing["colour"] = pd.Categorical([None] * len(frame), categories=["blue", "green", "red"])
    np.testing.assert_allclose(served.predict(unseen)["score"].to_numpy(),
                               served.model.inplace_predict(missing), rtol=1e-6)  # fmt: skip


def test_a_booster_without_training_categories_is_refused(tmp_path) -> None:
    frame, y = _frame(300, 3)
    codes = frame.assign(colour=pd.Categorical(frame["colour"]).codes.astype(float))
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(codes, y), 3)
    manifest = model_store.save(tmp_path / "model", booster, fmt="xgboost-json", model="m",
                                task="binary_classification", io=IO)  # fmt: skip
    with pytest.raises(ModelRefused, match=rf"^{re.escape(WHAT)}: format 'xgboost-json' refused "
                                           r"its files: the XGBoost model keeps no training "
                                           r"categories for \['colour'\]"):  # fmt: skip
        model_store.load_dir(tmp_path / "model", manifest.digest, WHAT)


def test_a_tampered_xgboost_file_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    doc = json.loads((directory / "model.xgb.json").read_text())
    doc["learner"]["learner_model_param"]["base_score"] = "[9E-1]"
    (directory / "model.xgb.json").write_text(json.dumps(doc))
    with pytest.raises(ModelRefused, match=rf"^{re.escape(WHAT)}: file model\.xgb\.json has sha256 \w+, its "
                                           "manifest says"):  # fmt: skip
        model_store.load_dir(directory, saved[1], WHAT)


@pytest.mark.parametrize(("payload", "why"), [
    (b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94.", "not JSON"),
    (b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{}}", "not JSON"),  # UBJSON is not read either
    (b'{"py/object": "os.system", "learner": {}, "version": [3, 2, 0]}', "top level"),
    (b'{"learner": {"objective": "x"}, "version": [3, 2, 0]}', "its learner names no"),
    (b"[1, 2]", "top level list"),
])  # fmt: skip
def test_a_file_that_is_not_xgboost_json_is_refused_before_parsing(saved, tmp_path, payload,
                                                                    why) -> None:  # fmt: skip
    directory = copy_saved(saved, tmp_path)
    (directory / "model.xgb.json").write_bytes(payload)
    digest = reseal(directory)  # consistent hashes: the digest a careless gate recorded
    with pytest.raises(ModelRefused, match=rf"^{re.escape(WHAT)}: model\.xgb\.json: not an XGBoost JSON "
                                           rf"model \({why}"):  # fmt: skip
        model_store.load_dir(directory, digest, WHAT)


def test_a_booster_without_class_probabilities_is_refused_for_classes(tmp_path) -> None:
    frame, _ = _frame(400, 3)
    x = tabular_frame(frame, IO.model_dump())
    labels = np.digitize(frame["x1"], [-1, 1])
    booster = xgb.train({"objective": "multi:softmax", "num_class": 3, "nthread": 1},
                        xgb.DMatrix(x, labels, enable_categorical=True), 5)  # fmt: skip
    with pytest.raises(ModelRefused, match=r"objective 'multi:softmax' does not give class "
                                           r"probabilities"):  # fmt: skip
        _save(tmp_path / "model", booster, CLASSES, frame)


def test_a_manifest_naming_an_extra_file_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    (directory / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=r"names file\(s\) \['model\.pkl'\] that format "
                                           r"'xgboost-json' does not have"):  # fmt: skip
        model_store.load_dir(directory, digest, WHAT)


def test_only_an_xgboost_object_is_saved_in_the_xgboost_format(tmp_path) -> None:
    with pytest.raises(model_store.StepError, match="saves an xgboost Booster or XGBModel"):
        model_store.save(tmp_path / "m", {"not": "a booster"}, fmt="xgboost-json", model="m",
                         task="binary_classification", io=IO)  # fmt: skip

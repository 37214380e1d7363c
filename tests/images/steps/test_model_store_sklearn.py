"""The scikit-learn format of model_steps.model_store (skops, never pickle): a fitted histogram
gradient boosting estimator round-trips and predicts as in memory (binary, several classes,
regression); a file holding a type outside the image's trusted list is refused before skops builds
anything; an object that is not an estimator is not saved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("skops")
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from model_steps import model_store
from model_steps.model_store import IoSpec, ModelRefused
from model_steps.serving import tabular_frame

IO = IoSpec(numeric=["x1"], categorical=["colour"], output="score")


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame({"x1": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n)})


def _round_trip(tmp_path, estimator, io: IoSpec):  # type: ignore[no-untyped-def]
    manifest = model_store.save(tmp_path / "model", estimator, fmt="sklearn-skops", model="m",
                                task="t", io=io, example=_frame().head(5))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "MANIFEST.json", "MLmodel", "io.json", "model.skops"]  # fmt: skip
    return model_store.load_dir(tmp_path / "model", manifest.digest, "m v1")


@pytest.mark.parametrize("kind", ["binary", "classes", "regression"])
def test_a_histogram_boosting_estimator_round_trips(tmp_path, kind) -> None:
    frame = _frame()
    x = tabular_frame(frame, IO.model_dump())
    io = IO
    if kind == "regression":
        est = HistGradientBoostingRegressor(max_iter=10).fit(x, frame["x1"] * 2)
        want = {"score": est.predict(x)}
    elif kind == "binary":
        est = HistGradientBoostingClassifier(max_iter=10).fit(x, (frame["x1"] > 0).astype(int))
        want = {"score": est.predict_proba(x)[:, 1]}
    else:
        io = IoSpec(numeric=["x1"], categorical=["colour"], output="predicted_class",
                    classes=["a", "b", "c"], scores=["score_a", "score_b", "score_c"])  # fmt: skip
        est = HistGradientBoostingClassifier(max_iter=10).fit(x, np.digitize(frame["x1"], [-1, 1]))
        proba = est.predict_proba(x)
        want = {f"score_{c}": proba[:, i] for i, c in enumerate("abc")}
    got = _round_trip(tmp_path, est, io).predict(frame)
    for column, values in want.items():
        np.testing.assert_allclose(got[column].to_numpy(), values, rtol=1e-12)
    if kind == "classes":
        assert set(got["predicted_class"]) <= {"a", "b", "c"}


def shout(x):  # type: ignore[no-untyped-def]  # a function skops would import and call
    return x


def test_a_type_outside_the_trusted_list_is_refused(tmp_path) -> None:
    frame = _frame()
    x = tabular_frame(frame, IO.model_dump())
    est = make_pipeline(FunctionTransformer(shout), HistGradientBoostingClassifier(max_iter=5))
    est.fit(x, (frame["x1"] > 0).astype(int))
    with pytest.raises(ModelRefused, match=r"model\.skops: holds type\(s\) \[.*shout'\] that the "
                                           r"image does not trust"):  # fmt: skip
        _round_trip(tmp_path, est, IO)


def test_only_an_estimator_is_saved(tmp_path) -> None:
    with pytest.raises(model_store.StepError, match="saves a fitted scikit-learn estimator"):
        model_store.save(tmp_path / "m", {"a": 1}, fmt="sklearn-skops", model="m", task="t", io=IO)

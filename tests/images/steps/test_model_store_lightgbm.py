"""The LightGBM format of model_steps.model_store: a fitted booster saved as LightGBM's text model
loads back (no pickle, no code from the directory) and predicts exactly as the booster in memory,
categoricals mapped onto the training categories; a tampered file, a file that is not a LightGBM
model and a manifest naming a side file are refused before LightGBM parses anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

lgb = pytest.importorskip("lightgbm")

from model_store_helpers import copy_saved, reseal  # noqa: E402

from model_steps import model_store  # noqa: E402
from model_steps.model_store import IoSpec, ModelRefused  # noqa: E402
from model_steps.serving import tabular_frame  # noqa: E402

WHAT = "model m-acme v3 (run abc)"
IO = IoSpec(numeric=["x1", "x2"], categorical=["colour"], output="score")


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.integers(0, 9, n),
                          "colour": rng.choice(["red", "green", "blue"], n)})  # fmt: skip
    logit = 1.5 * frame["x1"] + (frame["colour"] == "red") * 2.0 - 1.0
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


@pytest.fixture(scope="module")
def fitted() -> tuple[object, pd.DataFrame]:
    frame, y = _frame(800, 1)
    clf = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, random_state=0, verbose=-1)
    clf.fit(tabular_frame(frame, IO.model_dump()), y)
    return clf, frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory, fitted) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("lgb") / "model"
    manifest = model_store.save(directory, fitted[0], fmt="lightgbm-text", model="m",
                                task="binary_classification", io=IO, example=fitted[1].head(5))  # fmt: skip
    return directory, manifest.digest


def test_a_lightgbm_model_round_trips_and_predicts_as_in_memory(saved, fitted) -> None:
    directory, digest = saved
    assert sorted(p.name for p in directory.iterdir()) == [
        "MANIFEST.json", "MLmodel", "io.json", "model.lgb.txt"]  # fmt: skip
    assert (directory / "model.lgb.txt").read_text().startswith("tree\n")
    served = model_store.load_dir(directory, digest, WHAT)
    frame, _ = _frame(300, 2)
    frame.loc[:4, "colour"] = "purple"  # unseen at training: missing, not an error
    got = served.predict(frame)
    want = fitted[0].predict_proba(tabular_frame(frame, IO.model_dump()))[:, 1]
    assert list(got.columns) == ["score"] and len(got) == 300
    np.testing.assert_allclose(got["score"].to_numpy(), want, rtol=1e-12)
    # the categories are the training ones, whatever order a scored chunk shows them in
    reordered = frame.iloc[::-1]
    np.testing.assert_allclose(
        served.predict(reordered)["score"].to_numpy(), want[::-1], rtol=1e-12
    )


def test_a_tampered_lightgbm_file_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    text = (directory / "model.lgb.txt").read_text()
    (directory / "model.lgb.txt").write_text(text.replace("shrinkage=", "shrinkage=9", 1))
    with pytest.raises(ModelRefused, match=r"file model\.lgb\.txt has sha256 \w+, its manifest"):
        model_store.load_dir(directory, saved[1], WHAT)


def test_a_file_that_is_not_lightgbm_text_is_refused_before_parsing(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    (directory / "model.lgb.txt").write_bytes(b"\x80\x04K\x01.")  # a pickle payload
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=r"model\.lgb\.txt: not a LightGBM text model"):
        model_store.load_dir(directory, digest, WHAT)


def test_a_manifest_naming_an_extra_file_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    (directory / "python_model.pkl").write_bytes(b"\x80\x04K\x01.")
    digest = reseal(directory)  # consistent hashes, and the digest a careless gate recorded
    with pytest.raises(ModelRefused, match=r"names file\(s\) \['python_model\.pkl'\] that format "
                                           r"'lightgbm-text' does not have"):  # fmt: skip
        model_store.load_dir(directory, digest, WHAT)


def test_only_a_lightgbm_object_is_saved_in_the_lightgbm_format(tmp_path) -> None:
    with pytest.raises(model_store.StepError, match="saves a lightgbm Booster or LGBMModel"):
        model_store.save(tmp_path / "m", {"not": "a booster"}, fmt="lightgbm-text", model="m",
                         task="binary_classification", io=IO)  # fmt: skip

"""An XGBoost model through the step command lines, as the local runtime runs them (one process,
no horovodrun): the model's ``fit`` on the platform's training split, the fitted classifier logged
in XGBoost's JSON format with its digest; the evaluate gate verifies, registers and promotes it and
the score step scores with it through the same platform interface; the registered version loads
back (verified against its digest) and predicts as XGBoost's own predict on the logged booster.
Its run as a task with several classes is test_train_lightgbm's, parametrised by framework.

The helpers and the world (the session's small feature lake, MLflow) are test_train_lightgbm's;
each test is a customer of its own. Budget: ~10 s per step process."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_train_lightgbm import trains_gates_and_scores, world  # noqa: F401 (a fixture)

xgb = pytest.importorskip("xgboost")
pytest.importorskip("mlflow")


def test_an_xgboost_model_trains_registers_scores_and_loads_as_xgboost(world) -> None:  # noqa: F811
    res, decision, run = trains_gates_and_scores(world, "xgb-one", "xgboost", "model.xgb.json")
    assert res["checkpoint_uri"] == "" and not res["resumed"]  # its fit saves no checkpoint
    _loads_and_predicts_as_xgboost(decision["registered_model"], decision["candidate_version"],
                                   run.info.run_id)  # fmt: skip


def _loads_and_predicts_as_xgboost(name: str, version: str, run_id: str) -> None:
    """The registered version through model_store (verified, the image's wrapper) against
    XGBoost's own predict on the booster file the run logged."""
    import mlflow
    import pandas as pd

    from model_steps import model_store
    from model_steps.serving import tabular_frame

    served = model_store.load_version(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=tmp,
                                                   artifact_path="model/model.xgb.json")  # fmt: skip
        io = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, dst_path=tmp, artifact_path="model/io.json")).read_text())  # fmt: skip
        booster = xgb.Booster(model_file=path)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({c: rng.normal(size=200) for c in io["numeric"]})
    for c in io["categorical"]:  # the training categories, in a chunk's own category order
        frame[c] = rng.choice(served.categories[c], 200)
    best = int(booster.attr("best_iteration"))  # early stopping: as XGBClassifier.predict does
    want = booster.predict(xgb.DMatrix(tabular_frame(frame, io), enable_categorical=True),
                           iteration_range=(0, best + 1))  # fmt: skip
    np.testing.assert_allclose(served.predict(frame)["score"].to_numpy(), want, rtol=1e-6)

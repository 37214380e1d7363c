"""An XGBoost variant of the example propensity model for the train step's tests: the same
declarations (tables, features, label, suite), ``framework="xgboost"`` and a ``fit`` instead of a
network. Importable by the step's process through PYTHONPATH (tests/images/steps)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlmodels.customer_propensity import MODEL as KERAS_MODEL
from model_steps import expectations
from model_steps.model_api import FitData, ModelContext


def fit(data: FitData, ctx: ModelContext) -> Any:
    """The scikit-learn style classifier on the platform's frames (categoricals as pandas
    categories: ``enable_categorical``), early stopping on the platform's holdout."""
    import xgboost as xgb

    columns = [*data.numeric, *data.categorical]
    clf = xgb.XGBClassifier(n_estimators=200, learning_rate=0.1, max_depth=4, n_jobs=1,
                            enable_categorical=True, early_stopping_rounds=20,
                            random_state=data.seed)  # fmt: skip
    clf.fit(data.train[columns], data.train[data.label],
            eval_set=[(data.holdout[columns], data.holdout[data.label])], verbose=False)  # fmt: skip
    return clf


MODEL = dataclasses.replace(KERAS_MODEL, framework="xgboost", fit=fit, network=None)

# the same table read as a task with several classes (two: whether the diner converts), so the
# class columns run through train and scoring with XGBoost's binary objective read as two classes
CLASSES_MODEL = dataclasses.replace(
    MODEL, task="multiclass_classification", classes=("stays", "converts"),
    suite=Path(tempfile.gettempdir()) / f"xgboost_variant_classes-{os.getpid()}.json",
)  # fmt: skip
CLASSES_MODEL.suite.write_text(json.dumps(expectations.skeleton(CLASSES_MODEL)))

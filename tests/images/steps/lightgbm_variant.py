"""A LightGBM variant of the example propensity model for the train step's tests: the same
declarations (tables, features, label, suite), ``framework="lightgbm"`` and a ``fit`` instead of a
network. Importable by the step's process through PYTHONPATH (tests/images/steps)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlmodels.customer_propensity import MODEL as KERAS_MODEL
from model_steps.model_api import FitData, ModelContext


def fit(data: FitData, ctx: ModelContext) -> Any:
    import lightgbm as lgb

    columns = [*data.numeric, *data.categorical]
    clf = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, n_jobs=1,
                             random_state=data.seed, verbose=-1)  # fmt: skip
    clf.fit(
        data.train[columns], data.train[data.label],
        eval_set=[(data.holdout[columns], data.holdout[data.label])],
        callbacks=[lgb.early_stopping(20, verbose=False)],
    )  # fmt: skip
    return clf


MODEL = dataclasses.replace(KERAS_MODEL, framework="lightgbm", fit=fit, network=None)

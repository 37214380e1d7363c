"""A LightGBM variant of the example propensity model for the train step's tests: the same
declarations (tables, features, label, suite), ``framework="lightgbm"`` and a ``fit`` instead of a
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

# the same table read as a task with several classes (here two: whether the diner converts),
# so the class columns run through train, the gate and scoring. Its suite is the derived part for
# its declarations, written where the process runs (a file here would go stale with the model's)
CLASSES_MODEL = dataclasses.replace(
    MODEL, task="multiclass_classification", classes=("stays", "converts"),
    suite=Path(tempfile.gettempdir()) / f"lightgbm_variant_classes-{os.getpid()}.json",
)  # fmt: skip
CLASSES_MODEL.suite.write_text(json.dumps(expectations.skeleton(CLASSES_MODEL)))

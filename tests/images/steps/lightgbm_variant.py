"""The LightGBM variant of the example propensity model for the train step's tests
(framework_variants): its ``fit``, the binary ``MODEL`` and the two-class ``CLASSES_MODEL``."""

from __future__ import annotations

from typing import Any

from framework_variants import two_class_variant, variant

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


MODEL = variant("lightgbm", fit)
CLASSES_MODEL = two_class_variant(MODEL)

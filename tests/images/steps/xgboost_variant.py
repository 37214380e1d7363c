"""The XGBoost variant of the example propensity model for the train step's tests
(framework_variants): its ``fit``, the binary ``MODEL`` and the two-class ``CLASSES_MODEL``."""

from __future__ import annotations

from typing import Any

from framework_variants import two_class_variant, variant

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


MODEL = variant("xgboost", fit)
CLASSES_MODEL = two_class_variant(MODEL)

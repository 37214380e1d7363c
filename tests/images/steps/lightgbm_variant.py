"""The LightGBM variant of the example propensity model for the train step's tests
(framework_variants): its ``fit``, the binary ``MODEL`` and the two-class ``CLASSES_MODEL``."""

from __future__ import annotations

import dataclasses
from typing import Any

from framework_variants import two_class_variant, variant
from pydantic import Field

from mlmodels.customer_propensity.settings import PropensitySettings
from model_steps.model_api import FitData, ModelContext
from model_steps.search_space import IntRange, LogUniform


class TreeSettings(PropensitySettings):
    """The example's settings, plus the booster's own: what a tuning run varies."""

    learning_rate: float = Field(0.05, gt=0, le=1, description="LightGBM shrinkage per round")
    num_leaves: int = Field(15, ge=2, le=256, description="leaves per tree")


def fit(data: FitData, ctx: ModelContext) -> Any:
    import lightgbm as lgb

    columns = [*data.numeric, *data.categorical]
    clf = lgb.LGBMClassifier(n_estimators=200, learning_rate=ctx.settings.learning_rate,
                             num_leaves=ctx.settings.num_leaves, n_jobs=1,
                             random_state=data.seed, verbose=-1)  # fmt: skip
    clf.fit(
        data.train[columns], data.train[data.label],
        eval_set=[(data.holdout[columns], data.holdout[data.label])],
        callbacks=[lgb.early_stopping(20, verbose=False)],
    )  # fmt: skip
    return clf


MODEL = dataclasses.replace(
    variant("lightgbm", fit), settings=TreeSettings,
    search_space={"model.learning_rate": LogUniform(0.02, 0.3), "model.num_leaves": IntRange(4, 31)},
)  # fmt: skip
CLASSES_MODEL = two_class_variant(MODEL)

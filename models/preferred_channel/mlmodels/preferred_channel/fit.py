"""The fit: one LightGBM multiclass booster (softmax over ``CLASSES``) on the platform's training
split, early-stopped on its holdout and checkpointed (a retried train task continues the
booster). A native Booster trained with ``num_class`` set, so a class
missing from a small training split still gets its probability column when served."""

from __future__ import annotations

from typing import Any

from mlmodels.preferred_channel.features import CLASSES
from model_steps.checkpoints import LightGBMCheckpoints
from model_steps.model_api import FitData, ModelContext


def fit(data: FitData, ctx: ModelContext) -> Any:
    import lightgbm as lgb

    s = ctx.settings
    params = {
        "objective": "multiclass",
        "num_class": len(CLASSES),
        "learning_rate": s.learning_rate,
        "num_leaves": s.num_leaves,
        "min_child_samples": s.min_child_samples,
        "num_threads": 1,
        "seed": data.seed,
        "deterministic": True,
        "verbose": -1,
    }
    columns = [*data.numeric, *data.categorical]
    train = lgb.Dataset(data.train[columns], data.train[data.label])
    holdout = lgb.Dataset(data.holdout[columns], data.holdout[data.label], reference=train)
    # early stopping and checkpoints in one callback: a retried task continues the booster
    stop_and_save = LightGBMCheckpoints(data.checkpoints, s.early_stopping_rounds)
    booster, done = stop_and_save.resume()  # (None, 0) on a first attempt
    return lgb.train(
        params, train, num_boost_round=s.boosting_rounds - done, valid_sets=[holdout],
        init_model=booster, callbacks=[stop_and_save],
    )  # fmt: skip

"""preferred_channel: the channel of each diner's next orders, a multiclass model in LightGBM.

Different in kind from the two Keras examples: its task is multiclass_classification (the channel
of most orders in the label window among dine_in, takeaway, delivery, app, or ``none``: no order),
its framework is LightGBM (a single-process fit on the platform's training split, stored in
LightGBM's text format), and its extra requirement ``lightgbm`` gives it step images of its own.
It reads diners and orders, builds per-channel ordering features, is gated on the holdout's log
loss (lower is better) with a macro-F1 floor, scores one probability column per class, and pushes
the diners likeliest to order to the CRM with the channel to reach them on.
"""

from __future__ import annotations

from pathlib import Path

from mlmodels.preferred_channel import features
from mlmodels.preferred_channel.crm import crm_record, crm_select
from mlmodels.preferred_channel.fit import fit
from mlmodels.preferred_channel.settings import ChannelSettings
from mlmodels.restaurant_chain.datagen import example_data
from mlmodels.restaurant_chain.tables import DINERS, ORDERS
from model_steps.model_api import Model
from model_steps.search_space import IntRange, LogUniform

# what a tuning run (settings tuning.enabled) may vary: each trial is one LightGBM fit
SEARCH_SPACE = {
    "model.learning_rate": LogUniform(0.03, 0.3),
    "model.num_leaves": IntRange(7, 63),
    "model.min_child_samples": IntRange(10, 60, 5),
}

MODEL = Model(
    name="preferred_channel",
    description=__doc__ or "",
    task="multiclass_classification",
    framework="lightgbm",
    classes=features.CLASSES,
    key=features.KEY,
    raw_tables=(DINERS, ORDERS),
    feature_schema=features.FEATURE_SCHEMA,
    numeric_features=features.NUMERIC_FEATURES,
    categorical_features=features.CATEGORICAL_FEATURES,
    features=features.features,
    label=features.label,
    label_column=features.LABEL,
    label_fill=features.NO_ORDER_INDEX,
    fit=fit,
    crm_select=crm_select,
    crm_record=crm_record,
    suite=Path(__file__).with_name("expectations.json"),
    example_data=example_data,
    settings=ChannelSettings,
    search_space=SEARCH_SPACE,
)

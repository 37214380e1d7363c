"""next_spend: each diner's spend over the label window (28 days by default), a regression.

Different from customer_propensity in every part the contract names: it reads diners and orders only,
builds spend-rhythm features, labels with the window's total spend, trains a wide-and-deep regressor
(softplus output, MSE loss), is gated on RMSE (lower is better) with an R² floor, and pushes the top
expected spenders to the CRM as a VIP segment. Its own step ``spend_report`` (after score) writes
where the expected spend is, by region and channel.
"""

from __future__ import annotations

from pathlib import Path

from mlmodels.next_spend import features
from mlmodels.next_spend.crm import crm_record, crm_select
from mlmodels.next_spend.network import network
from mlmodels.next_spend.report import spend_report
from mlmodels.next_spend.settings import SpendSettings
from mlmodels.restaurant_chain.datagen import example_data
from mlmodels.restaurant_chain.tables import DINERS, ORDERS
from model_steps.model_api import Model
from model_steps.search_space import Choice, LogUniform

# what a tuning run (settings tuning.enabled) may vary; trial 0 is always the configured settings
SEARCH_SPACE = {
    "training.learning_rate": LogUniform(1e-3, 1e-2),
    "training.batch_size": Choice((128, 256, 512)),
    "model.deep_units": Choice(([32, 16], [64, 32], [128, 64])),
}

MODEL = Model(
    name="next_spend",
    description=__doc__ or "",
    task="regression",
    key=features.KEY,
    raw_tables=(DINERS, ORDERS),
    feature_schema=features.FEATURE_SCHEMA,
    numeric_features=features.NUMERIC_FEATURES,
    categorical_features=features.CATEGORICAL_FEATURES,
    features=features.features,
    label=features.label,
    label_column=features.LABEL,
    label_fill=0.0,
    network=network,
    crm_select=crm_select,
    crm_record=crm_record,
    suite=Path(__file__).with_name("expectations.json"),
    example_data=example_data,
    steps={"spend_report": spend_report},
    search_space=SEARCH_SPACE,
    settings=SpendSettings,
)

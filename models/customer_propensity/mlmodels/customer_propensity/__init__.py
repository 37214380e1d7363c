"""customer_propensity: who converts on an email offer in the two weeks after a campaign.

Binary classification on one row per diner: order history (recency, frequency, monetary, channel
mix) and email engagement before the cutoff; label = a conversion event in the label window (a
campaign rewarded on clicks learns from the window's click events instead). An MLP scores the
population, and the top ``top_fraction`` get the offer in the CRM.
"""

from __future__ import annotations

from pathlib import Path

from mlmodels.customer_propensity import features
from mlmodels.customer_propensity.crm import crm_record, crm_select
from mlmodels.customer_propensity.network import network
from mlmodels.customer_propensity.settings import PropensitySettings
from mlmodels.restaurant_chain.datagen import example_data
from mlmodels.restaurant_chain.tables import DINERS, EMAIL_EVENTS, ORDERS
from model_steps.model_api import Model
from model_steps.search_space import Choice, LogUniform, Uniform

# what a tuning run (settings tuning.enabled) may vary; trial 0 is always the configured settings
SEARCH_SPACE = {
    "training.learning_rate": LogUniform(1e-3, 1e-2),
    "training.batch_size": Choice((128, 256, 512)),
    "model.hidden_units": Choice(([64, 32], [128, 64], [256, 128])),
    "model.dropout": Uniform(0.0, 0.3),
}

MODEL = Model(
    name="customer_propensity",
    description=__doc__ or "",
    task="binary_classification",
    key=features.KEY,
    raw_tables=(DINERS, ORDERS, EMAIL_EVENTS),
    feature_schema=features.FEATURE_SCHEMA,
    numeric_features=features.NUMERIC_FEATURES,
    categorical_features=features.CATEGORICAL_FEATURES,
    features=features.features,
    label=features.label,
    label_column=features.LABEL,
    label_fill=0,
    clicks=features.clicks,
    network=network,
    crm_select=crm_select,
    crm_record=crm_record,
    suite=Path(__file__).with_name("expectations.json"),
    example_data=example_data,
    search_space=SEARCH_SPACE,
    settings=PropensitySettings,
)

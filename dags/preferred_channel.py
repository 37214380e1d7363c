"""Airflow DAGs for the preferred_channel model: one DAG per restaurant-chain customer.

Predicts the channel of each diner's next orders (dine_in, takeaway, delivery, app, or none: no
order) from their ordering history, a multiclass model fitted with LightGBM in one process (no
Horovod), gated on the holdout's log loss (lower is better) with a macro-F1 floor, and pushes the
diners likeliest to order to the CRM with their preferred channel. Everything below is data; the
model itself is the package models/preferred_channel/ (its extra requirement, lightgbm, gives it
step images of its own: the image manifest's ``models`` section).
"""

from mlplatform import register_pipeline

register_pipeline(
    globals(),
    {
        "name": "preferred_channel",
        "model": "mlmodels.preferred_channel",  # models/preferred_channel/
        "task": "multiclass_classification",
        "owner": "channels-ml",
        "description": "The channel of each diner's next orders; the likeliest to order get it "
        "in the CRM.",
        "schedule": "0 3 * * 1",
        "tags": ["channel", "lightgbm"],
        "steps": {
            "ingest": {},
            "validate": {},
            # a single-process LightGBM fit: no GPU, no Horovod ranks
            "train": {"local_processes": 1, "memory": "4Gi"},
            "evaluate": {},
            "score": {},
            "publish": {},
        },
        "defaults": {
            "data": {"lookback_days": 180, "label_window_days": 28},
            "model": {"boosting_rounds": 40, "top_fraction": 0.2},
            "gate": {
                "metric": "log_loss",
                "min_improvement": 0.0,
                "thresholds": {"macro_f1": 0.2},
                "on_fail": "score_with_champion",
            },
        },
        "tiers": {"standard": {}},
        "customers": [
            {"id": "acme-foods", "tier": "standard"},
            {"id": "bella-pasta", "tier": "standard", "settings": {"model": {"top_fraction": 0.1}}},
        ],
    },
)

"""Airflow DAGs for the customer_propensity model: one DAG per restaurant-chain customer.

The email-campaign case: predict which diners convert on an offer from their order history and past
engagement, then push the top scores to the customer's CRM. Everything below is data; the platform
(plugins/mlplatform) validates it and builds the DAGs. The model itself (raw tables, features,
label, network, suite, CRM record) is the package models/customer_propensity/.
"""

from mlplatform import register_pipeline

register_pipeline(
    globals(),
    {
        "name": "customer_propensity",
        "model": "mlmodels.customer_propensity",  # models/customer_propensity/
        "task": "binary_classification",
        "owner": "growth-ml",
        "description": "Propensity to convert on an email offer, scored daily and pushed to the CRM.",
        "schedule": "0 5 * * *",
        "tags": ["propensity", "email"],
        "steps": {
            "ingest": {},
            "validate": {},
            # Production trains on one GPU node; the local runtime uses 2 Horovod ranks on CPU.
            "train": {"gpu": 1, "local_processes": 2},
            "evaluate": {},
            "score": {},
            "publish": {},
        },
        "defaults": {
            "data": {"lookback_days": 365, "label_window_days": 14},
            "training": {"epochs": 10, "batch_size": 256, "learning_rate": 0.003},
            "model": {"hidden_units": [128, 64], "top_fraction": 0.2},
            # the treated diners get one of these variants, learned per segment by a Thompson
            # sampling bandit from each campaign's conversions (docs/campaigns.md)
            "crm": {
                "campaign": {
                    "id": "spring-offers",
                    "segment_column": "segment",  # a feature of the population table
                    "reward": "conversion",
                    "variants": [
                        {"id": "pct10-warm", "crm": {"discount_pct": 10, "tone": "warm"}},
                        {"id": "pct10-plain", "crm": {"discount_pct": 10, "tone": "plain"}},
                        {"id": "pct20-warm", "crm": {"discount_pct": 20, "tone": "warm"}},
                        {"id": "pct20-plain", "crm": {"discount_pct": 20, "tone": "plain"}},
                        {"id": "dessert-warm", "crm": {"treat": "dessert", "tone": "warm"}},
                        {"id": "dessert-plain", "crm": {"treat": "dessert", "tone": "plain"}},
                    ],
                    "policy": {"kind": "thompson", "floor": 0.02, "exploration": 0.1},
                }
            },
            "gate": {
                "metric": "roc_auc",
                "min_improvement": 0.002,
                "thresholds": {"roc_auc": 0.65, "brier": 0.2},
                "on_fail": "score_with_champion",
            },
        },
        "tiers": {
            "standard": {"schedule": "0 6 * * 1", "crm": {"max_concurrency": 2}},
            "premium": {
                "training": {"epochs": 12},
                "resources": {"train": {"gpu": 4, "shm_size": "16Gi", "memory": "64Gi"}},
            },
        },
        "customers": [
            {"id": "acme-foods", "tier": "premium"},
            {"id": "bella-pasta", "tier": "standard"},
            {
                "id": "casa-tacos",
                "tier": "standard",
                "settings": {"model": {"offer_code": "taco-tuesday"}},
            },
        ],
    },
)

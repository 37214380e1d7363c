"""Airflow DAGs for the next_spend model: one DAG per restaurant-chain customer.

Predicts each diner's spend over the next four weeks from their order history (regression), gates on
RMSE (lower is better) and pushes the expected top spenders to the CRM as a VIP segment. Everything
below is data; the model itself is the package models/next_spend/.
"""

from mlplatform import register_pipeline

register_pipeline(
    globals(),
    {
        "name": "next_spend",
        "model": "mlmodels.next_spend",  # models/next_spend/
        "task": "regression",
        "owner": "revenue-ml",
        "description": "Expected spend over the next 28 days; the top spenders become the VIP segment.",
        "schedule": "0 4 * * 1",
        "tags": ["spend", "vip"],
        "steps": {
            "ingest": {},
            "validate": {},
            "train": {"local_processes": 1, "memory": "8Gi"},
            "evaluate": {},
            "score": {},
            "publish": {},
        },
        # the model's own step (mlmodels.next_spend.report), in the score image, after score
        "extra_steps": {"spend_report": {"after": "score", "runs_in": "score"}},
        "defaults": {
            "data": {"lookback_days": 180, "label_window_days": 28},
            "validation": {"label_rate_min": 0.0, "label_rate_max": 1.0},
            "training": {"epochs": 8, "batch_size": 256, "learning_rate": 0.003},
            "gate": {
                "metric": "rmse",
                "min_improvement": 0.0,
                "thresholds": {"r2": 0.05},
                "on_fail": "score_with_champion",
            },
            "model": {"vip_fraction": 0.05, "segment": "vip"},
        },
        "tiers": {"standard": {}},
        "customers": [
            {"id": "acme-foods", "tier": "standard"},
            {"id": "bella-pasta", "tier": "standard", "settings": {"model": {"vip_fraction": 0.1}}},
        ],
    },
)

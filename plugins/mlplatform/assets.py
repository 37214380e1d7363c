"""Airflow assets: what each customer's DAGs produce, and what starts a training run.

Every step that commits something the rest of the loop waits for emits an asset event when it
succeeds (``outlets``):

==========================================  ==================  =================================
asset URI                                   emitted by          means
==========================================  ==================  =================================
``mlops://raw/<customer>``                  the landing system  the customer's raw drops landed
                                            (REST API)          (one asset per tenant: every
                                                                model of that customer consumes it)
``mlops://images/manifest``                 CI (REST API)       a new image manifest is deployed
``mlops://<pipeline>/<customer>/features``  ingest              the training + population tables
``mlops://<pipeline>/<customer>/champion``  evaluate            the champion is decided (promoted,
                                                                or kept by score_with_champion)
``mlops://<pipeline>/<customer>/scores``    publish             scores pushed to the CRM
``mlops://<pipeline>/<customer>/outcomes``  monitor             realized figures committed
``mlops://<pipeline>/<customer>/retrain``   request_retrain     monitoring asks for retraining
==========================================  ==================  =================================

A customer's training DAG runs on its cron schedule *or* on any asset its
``continuous_training`` settings turn on (new raw data, a new image manifest, a retrain request):
continuous training's two triggers, new data and a new pipeline implementation, plus degradation.
The monitoring DAG runs on its own cron or when raw data lands.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable

from mlplatform.spec import ResolvedCustomer

SCHEME = "mlops"
# what a step's success means, by step (the platform's steps; a model's own steps emit nothing)
STEP_OUTLETS = {
    "ingest": "features",
    "evaluate": "champion",
    "publish": "scores",
    "monitor": "outcomes",
}
RETRAIN = "retrain"


def _asset(path: str, what: str) -> Asset:
    return Asset(uri=f"{SCHEME}://{path}", name=path, group="mlops", extra={"means": what})


def raw_landed(customer_id: str) -> Asset:
    return _asset(f"raw/{customer_id}", "the customer's raw drops landed")


def image_manifest() -> Asset:
    return _asset("images/manifest", "CI deployed a new image manifest")


def pipeline_asset(customer: ResolvedCustomer, what: str) -> Asset:
    return _asset(f"{customer.pipeline.name}/{customer.id}/{what}", what)


def outlets(customer: ResolvedCustomer, step: str) -> list[Asset]:
    what = STEP_OUTLETS.get(step)
    return [pipeline_asset(customer, what)] if what else []


def training_triggers(customer: ResolvedCustomer) -> list[Asset]:
    ct = customer.settings.continuous_training
    chosen = [
        (ct.on_new_data, raw_landed(customer.id)),
        (ct.on_new_image, image_manifest()),
        (ct.on_degradation, pipeline_asset(customer, RETRAIN)),
    ]
    return [asset for on, asset in chosen if on]


def schedule(cron: str | None, triggers: list[Asset]) -> Any:
    """The cron, the assets (any one of them), or either."""
    if not triggers:
        return cron
    assets = AssetAny(*triggers)
    if cron is None:
        return assets
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=assets)


def training_schedule(customer: ResolvedCustomer) -> Any:
    return schedule(customer.schedule, training_triggers(customer))


def monitoring_schedule(customer: ResolvedCustomer) -> Any:
    return schedule(customer.settings.monitoring.schedule, [raw_landed(customer.id)])

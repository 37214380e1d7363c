"""DAG factory: a model module's spec becomes one Airflow DAG per (model, customer).

Each model module in ``dags/`` calls :func:`register_pipeline` with its spec and its own
``globals()``. An invalid spec, or a model package that is missing or does not compile
(:mod:`mlplatform.models`), raises at import, so Airflow shows an import error on that file only and
every other model's DAGs keep working.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseOperator, Param

from mlplatform import assets, notify
from mlplatform.invocation import StepInvocation
from mlplatform.models import ModelPackageError, check_model_ref
from mlplatform.pinning import PINNED_PARAMS
from mlplatform.rollback import build_rollback_tasks
from mlplatform.runtime import Runtime, current_runtime
from mlplatform.runtime.tasks import build_task
from mlplatform.spec import PipelineSpecError, ResolvedCustomer, parse_pipeline, resolve_customers
from mlplatform.tuning import build_tuning_stage
from mlplatform_contract.results import MonitorResult
from mlplatform_contract.steps import MONITOR_STEP


def _data_date_param(what_it_does: str) -> Param:
    """The trigger form's data date, the same field in every DAG of the platform."""
    return Param(
        None,
        type=["null", "string"],
        format="date",
        title="Data date (as of)",
        description=f"The last day whose raw data has landed: {what_it_does}. Empty: the day the "
        "run was due minus the customer's data.landing_delay_days (1 by default).",
    )


PARAMS = {
    "data_date": _data_date_param(
        "the model trains on labels up to it and scores features as of it"
    ),
    "force_promote": Param(
        False,
        type="boolean",
        title="Force promote",
        description="Promote the candidate even if it does not beat the champion "
        "(absolute thresholds still apply).",
    ),
    **PINNED_PARAMS,
}


def _doc(customer: ResolvedCustomer, runtime: Runtime) -> str:
    spec = customer.pipeline
    rows = "\n".join(
        f"| {kind} | {p.cpu} | {p.memory} | {p.gpu} | {p.node_pool} | {'yes' if p.spot else 'no'} "
        f"| {p.timeout_minutes} min | {p.retries} |"
        for kind, p in customer.profiles.items()
    )
    return (
        f"### {spec.name} for `{customer.id}` (tier `{customer.tier}`)\n\n{spec.description}\n\n"
        f"Owner: **{spec.owner}** · runtime: **{runtime}** · schedule: `{customer.schedule}`\n\n"
        "| step | cpu | memory | gpu | pool | spot | timeout | retries |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        "Trigger with *data_date* (the last day whose data has landed; default: "
        f"{customer.settings.data.landing_delay_days} day(s) before the run is due) to train on "
        "labels up to it and score features as of it; *force_promote* skips the champion "
        "comparison of the gate, never its absolute thresholds. *model_version* skips training "
        "and scores with that registered version (a re-score or backfill); with *make_champion* "
        "it is a rollback: the gate moves the champion back to it, recorded with *reason* "
        "(docs/model-lifecycle.md).\n\n"
        "**One run at a time** for this customer: its runs share the champion alias that evaluate "
        "moves and validate's drift reference, so a second run (any data date) waits *queued* until "
        "the running one ends. Unpausing the DAG (also *Unpause on trigger*) lets the scheduler "
        "start the latest scheduled run at once, and a manual run then queues behind it. A step that "
        "exits 2 (bad invocation or missing configuration) fails at once, without retries."
    )


MONITOR_PARAMS = {
    "data_date": _data_date_param(
        "every scored run whose label window has closed by then is monitored"
    ),
    "remonitor": Param(
        False,
        type="boolean",
        title="Monitor again",
        description="Recompute runs already monitored (the same inputs give the same figures).",
    ),
}


def _dag(customer: ResolvedCustomer, **kwargs: Any) -> DAG:
    """What every DAG of a customer shares: start, no catch-up, one run at a time (its runs share
    the champion alias, output keys and monitoring results), owner and tags."""
    spec = customer.pipeline
    tags = [*spec.tags, f"pipeline:{spec.name}", f"customer:{customer.id}", *kwargs.pop("tags")]
    return DAG(
        start_date=dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=tags,
        default_args={"owner": spec.owner, **notify.callbacks(spec.owner)},
        **kwargs,
    )


def build_dag(customer: ResolvedCustomer, runtime: Runtime) -> DAG:
    spec = customer.pipeline
    with _dag(
        customer,
        dag_id=customer.dag_id,
        description=f"{spec.description.splitlines()[0]} — customer {customer.id}",
        schedule=assets.training_schedule(customer),
        tags=[f"tier:{customer.tier}"],
        params=PARAMS,
        doc_md=_doc(customer, runtime),
    ) as dag:
        tasks: dict[str, BaseOperator] = {}
        previous: Any = None
        for kind in customer.steps:
            if kind == "train" and customer.settings.tuning.enabled:  # tune -> trials -> select
                first, last = build_tuning_stage(customer, runtime)
                if previous is not None:
                    previous >> first
                previous = last
            tasks[kind] = build_task(StepInvocation(customer, kind), runtime)
            if previous is not None:
                previous >> tasks[kind]
            previous = tasks[kind]
        for name, extra in spec.extra_steps.items():  # each after the step it names
            tasks[name] = build_task(StepInvocation(customer, name), runtime)
            tasks[extra.after] >> tasks[name]
    return dag


def request_retrain(ti: Any, **_: Any) -> dict[str, Any]:
    """Emit the retrain asset (this task's outlet) only when the monitor step asked for it: a
    skipped task emits nothing, so the training DAG starts only on a real request."""
    from airflow.sdk.exceptions import AirflowSkipException

    payload = ti.xcom_pull(task_ids=MONITOR_STEP)
    if payload is None:
        raise AirflowSkipException("no retraining: the monitor step gave no decision")
    decision = MonitorResult.model_validate(payload).retrain
    reasons = "; ".join(decision.reasons or ["the monitor step gave no decision"])
    if not decision.requested:
        raise AirflowSkipException(f"no retraining: {reasons}")
    print(f"retraining requested: {reasons}")
    return decision.model_dump(mode="json")


def build_monitor_dag(customer: ResolvedCustomer, runtime: Runtime) -> DAG:
    """The customer's monitoring DAG: outcomes of past scored runs, and maybe a retrain request."""
    with _dag(
        customer,
        dag_id=customer.monitor_dag_id,
        description=f"Outcome monitoring of {customer.pipeline.name} — customer {customer.id}",
        schedule=assets.monitoring_schedule(customer),
        tags=["monitoring"],
        params=MONITOR_PARAMS,
        doc_md=_monitor_doc(customer),
    ) as dag:
        monitor = build_task(StepInvocation(customer, MONITOR_STEP), runtime)
        retrain = PythonOperator(
            task_id="request_retrain",
            python_callable=request_retrain,
            outlets=[assets.pipeline_asset(customer, assets.RETRAIN)],
            retries=2,
            retry_delay=dt.timedelta(seconds=30),
            retry_exponential_backoff=2.0,
            execution_timeout=dt.timedelta(minutes=5),
        )
        monitor >> retrain
        if customer.settings.monitoring.auto_rollback:  # mlplatform.rollback
            monitor >> build_rollback_tasks(customer)[0]
    return dag


def _monitor_doc(customer: ResolvedCustomer) -> str:
    m = customer.settings.monitoring
    return (
        f"### Monitoring {customer.pipeline.name} for `{customer.id}`\n\n"
        "Joins each scored run's scores with the outcomes of its label window once it has closed "
        "(the model's own label), and the campaign's treated and control arms: realized metrics, "
        "calibration, lift and uplift, in MLflow and the lake's trend report. *request_retrain* "
        "emits the retrain asset the training DAG listens to when the champion's realized metric "
        "misses the gate's threshold or its scores drift beyond validation.drift_psi_fail, "
        f"outside a cool-down of {m.retrain_cooldown_hours} h after the champion's registration. "
        f"Schedule: `{m.schedule}` and whenever the customer's raw data lands."
        + (
            "\n\nAutomatic rollback is on: when the champion's verdict is harm or its realized "
            "metrics fail while the previous champion held, *rollback* triggers the training DAG "
            "pinned to the previous version (actor automatic; docs/model-lifecycle.md)."
            if m.auto_rollback
            else ""
        )
    )


def register_pipeline(module_globals: dict[str, Any], spec: dict[str, Any]) -> list[DAG]:
    """Validate ``spec`` and add its DAGs to the calling module's globals (where Airflow looks)."""
    source = Path(module_globals.get("__file__", "<unknown module>")).name
    if "dags" in Path(module_globals.get("__file__", "")).parts:
        source = f"dags/{source}"
    pipeline = parse_pipeline(spec, source)
    try:
        check_model_ref(pipeline.model)
    except ModelPackageError as exc:
        raise PipelineSpecError(source, [f"model: {exc}"]) from None
    runtime = current_runtime()
    dags = []
    for customer in resolve_customers(pipeline, source):
        dags.append(build_dag(customer, runtime))
        if customer.monitored:
            dags.append(build_monitor_dag(customer, runtime))
    for dag in dags:
        module_globals[dag.dag_id] = dag
    return dags

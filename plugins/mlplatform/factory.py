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

from airflow.sdk import DAG, BaseOperator, Param

from mlplatform import notify
from mlplatform.invocation import StepInvocation
from mlplatform.models import ModelPackageError, check_model_ref
from mlplatform.runtime import Runtime, current_runtime
from mlplatform.spec import PipelineSpecError, ResolvedCustomer, parse_pipeline, resolve_customers

PARAMS = {
    "data_date": Param(
        None,
        type=["null", "string"],
        format="date",
        title="Data date (as of)",
        description="The last day whose raw data has landed: the model trains on labels up to it "
        "and scores features as of it. Empty: the day the run was due minus the customer's "
        "data.landing_delay_days (1 by default).",
    ),
    "force_promote": Param(
        False,
        type="boolean",
        title="Force promote",
        description="Promote the candidate even if it does not beat the champion "
        "(absolute thresholds still apply).",
    ),
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
        "comparison of the gate, never its absolute thresholds.\n\n"
        "**One run at a time** for this customer: its runs share the champion alias that evaluate "
        "moves and validate's drift reference, so a second run (any data date) waits *queued* until "
        "the running one ends. Unpausing the DAG (also *Unpause on trigger*) lets the scheduler "
        "start the latest scheduled run at once, and a manual run then queues behind it. A step that "
        "exits 2 (bad invocation or missing configuration) fails at once, without retries."
    )


def _task_kwargs(invocation: StepInvocation, runtime: Runtime) -> dict[str, Any]:
    profile = invocation.profile
    timeout = dt.timedelta(minutes=profile.timeout_minutes)
    if runtime == "kubernetes":
        from mlplatform.runtime.kubernetes import execution_timeout

        timeout = execution_timeout(invocation)
    return {
        "task_id": invocation.step,
        "retries": profile.retries,
        "retry_delay": dt.timedelta(seconds=profile.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(hours=1),
        "execution_timeout": timeout,
    }


def build_task(invocation: StepInvocation, runtime: Runtime) -> BaseOperator:
    """The one switch between runtimes: same invocation, different executor."""
    kwargs = _task_kwargs(invocation, runtime)
    if runtime == "kubernetes":
        from mlplatform.runtime.kubernetes import build_step_task

        return build_step_task(invocation, kwargs)
    from mlplatform.runtime.local import LocalStepOperator

    processes = invocation.profile.local_processes if invocation.kind == "train" else 1
    if invocation.kind == "publish":  # a pod gets these from a Secret of that name
        kwargs["crm_connection_id"] = invocation.customer.settings.crm.connection_id
    return LocalStepOperator(
        arguments=invocation.argv(processes, gloo=True), env_vars=dict(invocation.env), **kwargs
    )


def build_dag(customer: ResolvedCustomer, runtime: Runtime) -> DAG:
    spec = customer.pipeline
    with DAG(
        dag_id=customer.dag_id,
        description=f"{spec.description.splitlines()[0]} — customer {customer.id}",
        schedule=customer.schedule,
        start_date=dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,  # runs of one customer share its champion alias and output keys
        tags=[
            *spec.tags,
            f"pipeline:{spec.name}",
            f"customer:{customer.id}",
            f"tier:{customer.tier}",
        ],
        params=PARAMS,
        default_args={"owner": spec.owner, **notify.callbacks(spec.owner)},
        doc_md=_doc(customer, runtime),
    ) as dag:
        tasks: dict[str, BaseOperator] = {}
        for kind in customer.steps:
            tasks[kind] = build_task(StepInvocation(customer, kind), runtime)
            if len(tasks) > 1:
                list(tasks.values())[-2] >> tasks[kind]
        for name, extra in spec.extra_steps.items():  # each after the step it names
            tasks[name] = build_task(StepInvocation(customer, name), runtime)
            tasks[extra.after] >> tasks[name]
    return dag


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
    dags = [build_dag(customer, runtime) for customer in resolve_customers(pipeline, source)]
    for dag in dags:
        module_globals[dag.dag_id] = dag
    return dags

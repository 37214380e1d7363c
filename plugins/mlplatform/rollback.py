"""The monitoring DAG's automatic rollback (settings ``monitoring.auto_rollback``, off by default).

The monitor step decides (model_steps.rollback) and records a typed request in its result
(``MonitorResult.rollback``); it never moves the alias. Two tasks after it carry the request out:

* ``request_rollback`` turns a requested rollback into the training DAG's trigger form (the pinned
  params of mlplatform.pinning: the previous version, *make_champion*, the reason naming the verdict
  and run, actor ``automatic``, and the champion it replaces) and skips otherwise;
* ``rollback`` (TriggerDagRunOperator) starts the customer's training DAG with it. Its run id is
  derived from the failed scored run, so a second monitoring run that sees the same failure before
  the rollback ran starts nothing (``skip_when_already_exists``).

The gate then makes the audited move (actor ``automatic``), score re-scores with the restored
version and publish re-publishes under its exactly-once protocol: the operator's rollback path.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator

from mlplatform.spec import ResolvedCustomer
from mlplatform_contract.results import MonitorResult
from mlplatform_contract.steps import (
    MONITOR_STEP,
    PARAM_ACTOR,
    PARAM_MAKE_CHAMPION,
    PARAM_MODEL_VERSION,
    PARAM_REASON,
    PARAM_REPLACES,
)

REQUEST_TASK = "request_rollback"
TRIGGER_TASK = "rollback"
RUN_ID_PREFIX = "auto_rollback__"


def rollback_conf(ti: Any, **_: Any) -> dict[str, Any]:
    """The training DAG's conf for the monitor step's rollback request; skipped without one."""
    from airflow.sdk.exceptions import AirflowSkipException

    payload = ti.xcom_pull(task_ids=MONITOR_STEP)
    if payload is None:
        raise AirflowSkipException("no rollback: the monitor step gave no decision")
    request = MonitorResult.model_validate(payload).rollback
    if request is None:
        raise AirflowSkipException("no rollback: the monitor step judged none")
    if not request.requested:
        raise AirflowSkipException(f"no rollback: {'; '.join(request.reasons)}")
    print(f"automatic rollback requested: {request.reason}")
    failed = re.sub(r"[^A-Za-z0-9_.~:+-]", "_", str(request.scored_run_key))
    return {
        "run_id": f"{RUN_ID_PREFIX}v{request.from_version}_{failed}"[:250],
        "conf": {
            PARAM_MODEL_VERSION: request.to_version,
            PARAM_MAKE_CHAMPION: True,
            PARAM_REASON: request.reason,
            PARAM_ACTOR: "automatic",
            PARAM_REPLACES: request.from_version,
        },
    }


def build_rollback_tasks(customer: ResolvedCustomer) -> tuple[BaseOperator, BaseOperator]:
    """(request_rollback, rollback): the monitoring DAG's tasks after the monitor step."""
    pulled = f"ti.xcom_pull(task_ids='{REQUEST_TASK}')"
    request = PythonOperator(
        task_id=REQUEST_TASK,
        python_callable=rollback_conf,
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
        execution_timeout=dt.timedelta(minutes=5),
    )
    trigger = TriggerDagRunOperator(
        task_id=TRIGGER_TASK,
        trigger_dag_id=customer.dag_id,
        trigger_run_id="{{ " + pulled + "['run_id'] }}",
        conf="{{ " + pulled + "['conf'] | tojson }}",  # JSON: the operator parses it back
        skip_when_already_exists=True,
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
        execution_timeout=dt.timedelta(minutes=5),
    )
    request >> trigger
    return request, trigger

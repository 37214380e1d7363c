"""The runtime choice, in one place: a step invocation becomes the operator of the current runtime
(the factory builds the training and monitoring DAGs with it, the tuning stage its mapped trials).
Below both: neither imports the other for it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator

from mlplatform import assets
from mlplatform.invocation import StepInvocation
from mlplatform.pinning import SKIPPED_WHEN_PINNED, skip_when_pinned
from mlplatform.runtime import Runtime
from mlplatform_contract.registry_access import step_username


def _task_kwargs(invocation: StepInvocation, runtime: Runtime) -> dict[str, Any]:
    profile = invocation.profile
    timeout = dt.timedelta(minutes=profile.timeout_minutes)
    if runtime == "kubernetes":
        from mlplatform.runtime.kubernetes import execution_timeout

        timeout = execution_timeout(invocation)
    kwargs: dict[str, Any] = {
        "task_id": invocation.step,
        "retries": profile.retries,
        "retry_delay": dt.timedelta(seconds=profile.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(hours=1),
        "execution_timeout": timeout,
        "outlets": assets.outlets(invocation.customer, invocation.step),
    }
    if invocation.step in SKIPPED_WHEN_PINNED:  # a run pinned to a model version trains nothing
        kwargs["pre_execute"] = skip_when_pinned
    if invocation.step == "evaluate":  # runs after a trained candidate or a skipped training
        kwargs["trigger_rule"] = "none_failed"
    return kwargs


def task_spec(invocation: StepInvocation, runtime: Runtime) -> tuple[type[BaseOperator], dict]:
    """The one switch between runtimes: same invocation, different executor (the operator class
    and its arguments, so the tuning stage can also ``.partial(...).expand(...)`` it)."""
    kwargs = _task_kwargs(invocation, runtime)
    if runtime == "kubernetes":
        from mlplatform.runtime.kubernetes import step_task_spec

        return step_task_spec(invocation, kwargs)
    from mlplatform.runtime.local import LocalStepOperator

    processes = invocation.profile.local_processes if invocation.kind == "train" else 1
    if invocation.kind == "publish":  # a pod gets these from a Secret of that name
        kwargs["crm_connection_id"] = invocation.customer.settings.crm.connection_id
    if registry_user := step_username(invocation.step, invocation.customer.id):
        kwargs["registry_user"] = registry_user  # a pod gets it from that identity's Secret
    argv = invocation.argv(processes, gloo=True)
    return LocalStepOperator, {"arguments": argv, "env_vars": dict(invocation.env), **kwargs}


def build_task(invocation: StepInvocation, runtime: Runtime, **overrides: Any) -> BaseOperator:
    operator, kwargs = task_spec(invocation, runtime)
    return operator(**{**kwargs, **overrides})

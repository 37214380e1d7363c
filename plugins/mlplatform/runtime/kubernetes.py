"""The kubernetes runtime: a KubernetesPodOperator per step, an MPIJob for multi-node training."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from mlplatform.images import load_manifest
from mlplatform.invocation import StepInvocation, literal_env
from mlplatform.runtime import pods
from mlplatform.runtime.mpijob import MPIJobOperator, render_mpijob
from mlplatform_contract.steps import (
    ENV_TRIAL,
    EXIT_SKIP_DOWNSTREAM,
    NON_RETRYABLE_EXIT_CODES,
    trial_value,
)


def base_container_exit_code(remote_pod: k8s.V1Pod | None, container: str) -> int | None:
    """The step container's exit code, from the pod status the operator read after completion."""
    statuses = (
        remote_pod.status.container_statuses if remote_pod and remote_pod.status else None
    ) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status.state.terminated if status and status.state else None
    return terminated.exit_code if terminated else None


class StepPodOperator(KubernetesPodOperator):
    """KubernetesPodOperator that maps the contract's non-retryable exit codes to a failure without
    retries, like the local runtime does.

    The provider turns any failed pod into a retryable AirflowException in ``cleanup``, which both
    the synchronous and the deferrable path call once the pod has finished; the container's exit
    code is in the pod status handed to it."""

    def __init__(self, *, trial: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # a mapped trial task's trial (the tune/halve step's XCom entry), as STEP_TRIAL
        self.trial = trial

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        if self.trial is not None:
            step = next(c for c in pod.spec.containers if c.name == self.base_container_name)
            step.env = [
                *(step.env or []),
                k8s.V1EnvVar(name=ENV_TRIAL, value=trial_value(self.trial)),
            ]
        return pod

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict[str, Any] | None = None,
        context: Any = None,
    ) -> None:
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            code = base_container_exit_code(remote_pod, self.base_container_name)
            if code in NON_RETRYABLE_EXIT_CODES:
                raise AirflowFailException(
                    f"step container exited with code {code} ({NON_RETRYABLE_EXIT_CODES[code]}): "
                    f"a retry cannot fix it, so the task fails now. {exc}"
                ) from exc
            raise


def pod_name(invocation: StepInvocation) -> str:
    # The operator appends a random suffix and trims to 63 characters; labels carry full names.
    return f"{invocation.pipeline.replace('_', '-')}-{invocation.customer.id}-{invocation.step}"


def build_step_task(invocation: StepInvocation, task_kwargs: dict[str, Any]) -> BaseOperator:
    operator, kwargs = step_task_spec(invocation, task_kwargs)
    return operator(**kwargs)


def step_task_spec(
    invocation: StepInvocation, task_kwargs: dict[str, Any]
) -> tuple[type[BaseOperator], dict[str, Any]]:
    """The operator class (pod, or MPIJob for multi-node training) and its arguments."""
    cluster = pods.ClusterSettings()
    manifest = load_manifest()
    image = manifest.image_for(invocation.kind, invocation.pipeline)
    profile = invocation.profile
    if profile.nodes > 1:
        return MPIJobOperator, dict(
            mpijob=render_mpijob(invocation, image, manifest.commit, cluster),
            namespace=cluster.namespace,
            kubernetes_conn_id=cluster.kubernetes_conn_id,
            startup_timeout_seconds=profile.startup_timeout_seconds,
            timeout_seconds=profile.timeout_minutes * 60,
            # always: a multi-node training runs for hours and must not hold a worker slot
            deferrable=True,
            **task_kwargs,
        )
    argv = invocation.argv(horovod_processes=profile.processes_per_pod)
    spark = spark_executors(invocation)
    volume, mount = pods.spark_template_volume()
    ca_volumes, ca_mounts = pods.registry_ca_volume(invocation.step)
    return StepPodOperator, dict(
        kubernetes_conn_id=cluster.kubernetes_conn_id,
        namespace=cluster.namespace,
        name=pod_name(invocation),
        image=image,
        image_pull_policy="IfNotPresent",
        cmds=argv[:1],
        arguments=argv[1:],
        **_pod_env(invocation, image, manifest.commit, cluster, spark),
        labels=invocation.labels,
        container_resources=pods.resources(profile),
        volumes=pods.volumes(profile) + ([volume] if spark else []) + ca_volumes,
        volume_mounts=pods.volume_mounts(profile) + ([mount] if spark else []) + ca_mounts,
        node_selector=pods.node_selector(profile),
        tolerations=pods.tolerations(profile),
        security_context=pods.pod_security_context(),
        container_security_context=pods.container_security_context(),
        xcom_sidecar_container_security_context=pods.container_security_context(),
        service_account_name=cluster.service_account(invocation.kind),
        # IRSA projects its own token; only a Spark driver calls the API (to create its executors)
        automount_service_account_token=spark,
        priority_class_name=profile.priority_class,
        startup_timeout_seconds=profile.startup_timeout_seconds,
        active_deadline_seconds=profile.timeout_minutes * 60,
        do_xcom_push=True,
        skip_on_exit_code=EXIT_SKIP_DOWNSTREAM,
        on_finish_action="delete_succeeded_pod",  # keep failed pods for `kubectl describe`
        reattach_on_restart=True,
        deferrable=cluster.deferrable,
        log_events_on_failure=True,
        get_logs=True,
        **task_kwargs,
    )


def _pod_env(
    invocation: StepInvocation, image: str, commit: str | None, cluster: pods.ClusterSettings,
    spark: bool,
) -> dict[str, Any]:  # fmt: skip
    """What the step's container reads: its contract variables (settings as literals), lineage,
    the Spark driver's wiring, and plain V1EnvVar entries for the try, the pod IP, publish's CRM
    Secret keys and the step's own registry identity; the platform ConfigMap."""
    return dict(
        env_vars={
            **literal_env(invocation.env),
            **pods.lineage_env(image, commit),
            **(pods.spark_driver_env(image, cluster) if spark else {}),
        },
        pod_runtime_info_envs=pods.try_number_env()
        + (pods.pod_ip_env() if spark else [])
        + pods.crm_env(invocation.kind, invocation.customer.settings.crm.connection_id)
        + pods.registry_env(invocation.step, invocation.customer.id),
        env_from=pods.env_from(cluster),
    )


def spark_executors(invocation: StepInvocation) -> bool:
    """Whether this step runs Spark with executor pods (ingest, data.spark.executors > 0)."""
    return invocation.step == "ingest" and invocation.customer.settings.data.spark.executors > 0


def execution_timeout(invocation: StepInvocation) -> dt.timedelta:
    """The step's own budget plus the time a pod may wait for a node to appear."""
    profile = invocation.profile
    return dt.timedelta(minutes=profile.timeout_minutes, seconds=profile.startup_timeout_seconds)

"""Multi-node Horovod training as a kubeflow MPIJob (mpi-operator, kubeflow.org/v2beta1).

The operator creates the MPIJob, streams the launcher's log into the task log, waits until the job's
conditions say it succeeded or failed, and deletes it (workers included) whatever happened.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from mlplatform.invocation import StepInvocation
from mlplatform.profiles import ResourceProfile
from mlplatform.runtime import pods
from mlplatform.steps import ENV_TRY_NUMBER, RESULT_LOG_PREFIX

GROUP, VERSION, PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
HOSTFILE = "/etc/mpi/hostfile"
SSH_HOME = "/home/mpiuser"
SSHD_CONFIG = "/etc/mlops/sshd_config"
LAUNCHER_PROFILE = ResourceProfile(cpu="1", memory="2Gi", node_pool="cpu", spot=False)


def _pod_template(
    invocation: StepInvocation, image: str, commit: str | None, profile: ResourceProfile,
    role: str, command: list[str], cluster: pods.ClusterSettings,
) -> dict[str, Any]:  # fmt: skip
    """A pod template from the same pieces the pod operator uses, plus a writable ssh home."""
    home = k8s.V1Volume(name="mpi-home", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="64Mi"))
    container = k8s.V1Container(
        name=role,
        image=image,
        image_pull_policy="IfNotPresent",
        command=command,
        # the manifest is a template field rendered per try: the try number can be a template here
        env=[
            k8s.V1EnvVar(name=k, value=v)
            for k, v in {
                **invocation.env,
                **pods.lineage_env(image, commit),
                # the manifest is a template field, rendered per try
                ENV_TRY_NUMBER: "{{ ti.try_number }}",
            }.items()
        ],
        env_from=pods.env_from(
            invocation.kind, cluster, invocation.customer.settings.crm.connection_id
        ),
        resources=pods.resources(profile),
        security_context=pods.container_security_context(),
        volume_mounts=[
            *pods.volume_mounts(profile),
            k8s.V1VolumeMount(name="mpi-home", mount_path=SSH_HOME),
        ],
    )
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels={**invocation.labels, "mlops.io/mpi-role": role}),
        spec=k8s.V1PodSpec(
            containers=[container],
            volumes=[*pods.volumes(profile), home],
            node_selector=pods.node_selector(profile),
            tolerations=pods.tolerations(profile) or None,
            security_context=pods.pod_security_context(),
            service_account_name=cluster.service_account(invocation.kind),
            automount_service_account_token=False,
            priority_class_name=profile.priority_class,
            restart_policy="Never",
        ),
    )
    return ApiClient().sanitize_for_serialization(template)


def render_mpijob(
    invocation: StepInvocation, image: str, commit: str | None, cluster: pods.ClusterSettings
) -> dict[str, Any]:
    """The MPIJob manifest; its name is set per try at execute time."""
    profile = invocation.profile
    launch = invocation.argv(profile.total_processes, hostfile=HOSTFILE)
    # The train image ships this config (port 2222, host key from the operator-mounted ~/.ssh);
    # it must live outside SSH_HOME, which is a writable emptyDir here.
    sshd = ["/usr/sbin/sshd", "-De", "-f", SSHD_CONFIG]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MPIJob",
        "metadata": {"namespace": cluster.namespace, "labels": invocation.labels},
        "spec": {
            "slotsPerWorker": profile.processes_per_pod,
            "sshAuthMountPath": f"{SSH_HOME}/.ssh",
            "mpiImplementation": "OpenMPI",
            "runPolicy": {
                "cleanPodPolicy": "Running",
                "backoffLimit": 0,  # Airflow's retries decide, with the checkpoint to resume from
                "activeDeadlineSeconds": profile.timeout_minutes * 60,
                "ttlSecondsAfterFinished": 3600,
            },
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": _pod_template(
                        invocation, image, commit, LAUNCHER_PROFILE, "launcher", launch, cluster
                    ),
                },
                "Worker": {
                    "replicas": profile.nodes,
                    "restartPolicy": "Never",
                    "template": _pod_template(
                        invocation, image, commit, profile, "worker", sshd, cluster
                    ),
                },
            },
        },
    }


def job_state(status: dict[str, Any] | None) -> str:
    """'Succeeded', 'Failed' or 'Running' from the MPIJob's conditions (last true one wins)."""
    for condition in reversed((status or {}).get("conditions") or []):
        if condition.get("status") == "True" and condition.get("type") in ("Succeeded", "Failed"):
            return str(condition["type"])
    return "Running"


def result_from_log(lines: Sequence[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        _, marker, payload = line.partition(RESULT_LOG_PREFIX)
        if marker:
            return dict(json.loads(payload))
    return None


class MPIJobOperator(BaseOperator):
    template_fields: Sequence[str] = ("mpijob",)
    ui_color = "#fde9d9"

    def __init__(
        self, *, mpijob: dict[str, Any], namespace: str, kubernetes_conn_id: str,
        startup_timeout_seconds: int = 900, poll_interval: float = 10, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.mpijob = mpijob
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.startup_timeout_seconds = startup_timeout_seconds
        self.poll_interval = poll_interval
        self._created: str | None = None

    def job_name(self, context: Any) -> str:
        """Unique per DAG run and try, at most 40 characters so pod names stay under 63."""
        ti = context["ti"]
        key = f"{ti.dag_id}/{ti.run_id}/{ti.try_number}".encode()
        customer = self.mpijob["metadata"]["labels"]["mlops.io/customer"][:22]
        return f"train-{customer}-{hashlib.sha256(key).hexdigest()[:10]}"

    def _clients(self) -> tuple[Any, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from kubernetes.client import CoreV1Api, CustomObjectsApi

        api_client = KubernetesHook(conn_id=self.kubernetes_conn_id).api_client
        return CustomObjectsApi(api_client), CoreV1Api(api_client)

    def execute(self, context: Any) -> Any:
        custom, core = self._clients()
        body = copy.deepcopy(self.mpijob)
        name = body["metadata"]["name"] = self.job_name(context)
        self.log.info("Creating MPIJob %s/%s", self.namespace, name)
        custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        self._created = name
        try:
            lines = self._stream_launcher(core, name)
            state = self._wait(custom, name)
        finally:
            self._delete(custom, name)
        if state != "Succeeded":
            raise AirflowException(f"MPIJob {name} ended {state}; see the launcher log above")
        result = result_from_log(lines)
        if result is None:
            raise AirflowException(f"MPIJob {name} succeeded but its launcher logged no result")
        return result

    def _stream_launcher(self, core: Any, name: str) -> list[str]:
        selector = f"training.kubeflow.org/job-name={name},training.kubeflow.org/job-role=launcher"
        deadline = time.monotonic() + self.startup_timeout_seconds
        while time.monotonic() < deadline:
            found = core.list_namespaced_pod(self.namespace, label_selector=selector).items
            if found and found[0].status.phase in ("Running", "Succeeded", "Failed"):
                stream = core.read_namespaced_pod_log(
                    found[0].metadata.name, self.namespace, follow=True, _preload_content=False
                )
                lines = []
                for raw in stream.stream():
                    for line in raw.decode(errors="replace").splitlines():
                        lines.append(line)
                        self.log.info("[launcher] %s", line)
                return lines
            time.sleep(self.poll_interval)
        raise AirflowException(
            f"MPIJob {name}: launcher did not start in {self.startup_timeout_seconds}s"
        )

    def _wait(self, custom: Any, name: str) -> str:
        while True:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            state = job_state(job.get("status"))
            if state != "Running":
                return state
            time.sleep(self.poll_interval)

    def _delete(self, custom: Any, name: str) -> None:
        self.log.info("Deleting MPIJob %s/%s and its pods", self.namespace, name)
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
        )
        self._created = None

    def on_kill(self) -> None:
        if self._created:
            custom, _ = self._clients()
            self._delete(custom, self._created)

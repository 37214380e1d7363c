"""Multi-node Horovod training as a kubeflow MPIJob (mpi-operator, kubeflow.org/v2beta1).

Restart-safe: every job is labelled with its DAG, task, run and try. A retry or a restarted worker
first looks for the run's jobs and adopts one that is still running (or succeeded before its result
was read) instead of starting a second training that would write the same checkpoints. Waiting is
deferrable: a trigger (``mpijob_trigger``) polls the job's conditions in the triggerer, so a
multi-hour training holds no worker slot. The result comes from the launcher's log, read again in full
once the job has finished, so a log stream broken mid-training loses nothing. On success the job is
deleted (workers with it); a failed job is kept for ``kubectl describe`` (its running pods are
removed by ``cleanPodPolicy``, the job itself by ``ttlSecondsAfterFinished``).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, literal
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from mlplatform.invocation import LITERAL_VARS, StepInvocation
from mlplatform.profiles import ResourceProfile
from mlplatform.runtime import pods
from mlplatform.runtime.mpijob_api import job_state
from mlplatform_contract.steps import ENV_TRY_NUMBER, RESULT_LOG_PREFIX

if TYPE_CHECKING:
    from mlplatform.runtime.mpijob_api import MPIJobApi

GROUP, VERSION, PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
# Which task instance a job belongs to (values made label-safe: run ids carry ':' and '+').
RUN_LABELS = ("mlops.io/dag-id", "mlops.io/task-id", "mlops.io/run-id")
TRY_LABEL = "mlops.io/try-number"
RUN_ID_ANNOTATION = "mlops.io/airflow-run-id"
# A failed job stays this long for debugging; a succeeded one is deleted by the operator at once.
FAILED_JOB_TTL_SECONDS = 3 * 24 * 3600
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
    # the registry identity on the launcher (horovodrun forwards its environment to every rank),
    # the MLflow CA on every pod (a rank reads it where it runs)
    registry = (
        pods.registry_env(invocation.step, invocation.customer.id) if role == "launcher" else []
    )
    ca_volumes, ca_mounts = pods.registry_ca_volume(invocation.step)
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
        ]
        + registry,
        env_from=pods.env_from(cluster),  # no CRM Secret (pods.crm_env is publish's)
        resources=pods.resources(profile),
        security_context=pods.container_security_context(),
        volume_mounts=[
            *pods.volume_mounts(profile),
            k8s.V1VolumeMount(name="mpi-home", mount_path=SSH_HOME),
            *ca_mounts,
        ],
    )
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels={**invocation.labels, "mlops.io/mpi-role": role}),
        spec=k8s.V1PodSpec(
            containers=[container],
            volumes=[*pods.volumes(profile), home, *ca_volumes],
            node_selector=pods.node_selector(profile),
            tolerations=pods.tolerations(profile) or None,
            security_context=pods.pod_security_context(),
            service_account_name=cluster.service_account(invocation.kind),
            automount_service_account_token=False,
            priority_class_name=profile.priority_class,
            restart_policy="Never",
        ),
    )
    manifest = ApiClient().sanitize_for_serialization(template)
    for env in manifest["spec"]["containers"][0]["env"]:  # settings are data (invocation.py)
        if env["name"] in LITERAL_VARS:
            env["value"] = literal(env["value"])
    return manifest


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
                "ttlSecondsAfterFinished": FAILED_JOB_TTL_SECONDS,
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


def result_from_log(lines: Sequence[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        _, marker, payload = line.partition(RESULT_LOG_PREFIX)
        if marker:
            return dict(json.loads(payload))
    return None


def run_labels(ti: Any) -> dict[str, str]:
    """The labels that find a task instance's jobs across its tries."""
    from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

    values = (ti.dag_id, ti.task_id, ti.run_id)
    return {key: make_safe_label_value(str(v)) for key, v in zip(RUN_LABELS, values, strict=True)}


def adoptable(jobs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The job a new try should take over: one that succeeded (its result was never read), else the
    latest still running. Failed jobs are left alone for debugging."""
    by_try = sorted(jobs, key=lambda j: int(j["metadata"]["labels"].get(TRY_LABEL, "0")))
    for wanted in ("Succeeded", "Running"):
        matching = [j for j in by_try if job_state(j.get("status")) == wanted]
        if matching:
            return matching[-1]
    return None


class MPIJobOperator(BaseOperator):
    """Runs (or adopts) the task's MPIJob, waits for it, and returns the launcher's step result."""

    template_fields: Sequence[str] = ("mpijob",)
    ui_color = "#fde9d9"

    def __init__(
        self, *, mpijob: dict[str, Any], namespace: str, kubernetes_conn_id: str,
        startup_timeout_seconds: int = 900, timeout_seconds: int = 24 * 3600,
        poll_interval: float = 30, deferrable: bool = True, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.mpijob = mpijob
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.startup_timeout_seconds = startup_timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._job: str | None = None

    def job_name(self, context: Any) -> str:
        """Unique per DAG run and try, at most 40 characters so pod names stay under 63."""
        ti = context["ti"]
        key = f"{ti.dag_id}/{ti.run_id}/{ti.try_number}".encode()
        customer = self.mpijob["metadata"]["labels"]["mlops.io/customer"][:22]
        return f"train-{customer}-{hashlib.sha256(key).hexdigest()[:10]}"

    def job_body(self, context: Any) -> dict[str, Any]:
        """The manifest this try would create: named per try, labelled by dag/task/run/try."""
        ti = context["ti"]
        body = copy.deepcopy(self.mpijob)
        metadata = body["metadata"]
        metadata["name"] = self.job_name(context)
        metadata["labels"] = {**metadata["labels"], **run_labels(ti), TRY_LABEL: str(ti.try_number)}
        metadata["annotations"] = {**metadata.get("annotations", {}), RUN_ID_ANNOTATION: ti.run_id}
        return body

    def api(self) -> MPIJobApi:
        from mlplatform.runtime.mpijob_api import MPIJobApi, connect

        return MPIJobApi(connect(self.kubernetes_conn_id), self.namespace)

    def execute(self, context: Any) -> Any:
        api = self.api()
        name = self._adopt_or_create(api, context)
        if self.deferrable:
            from mlplatform.runtime.mpijob_trigger import MPIJobTrigger

            self.defer(
                trigger=MPIJobTrigger(
                    name=name, namespace=self.namespace, kubernetes_conn_id=self.kubernetes_conn_id,
                    poll_interval=self.poll_interval, startup_deadline=self._deadline(
                        self.startup_timeout_seconds), deadline=self._deadline(
                        self.startup_timeout_seconds + self.timeout_seconds),
                ),
                method_name="execute_complete",
            )  # fmt: skip
        state = self._follow(api, name)
        return self._finish(api, name, state)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Back from the trigger: the job ended (or never started, or overran)."""
        name = str(event["name"])
        self._job = name
        return self._finish(self.api(), name, str(event["state"]), event.get("message"))

    def _adopt_or_create(self, api: MPIJobApi, context: Any) -> str:
        body = self.job_body(context)
        earlier = adoptable(api.find(run_labels(context["ti"])))
        if earlier is not None:
            name = str(earlier["metadata"]["name"])
            self.log.info("Adopting MPIJob %s/%s (%s) from try %s instead of starting another",
                          self.namespace, name, job_state(earlier.get("status")),
                          earlier["metadata"]["labels"].get(TRY_LABEL))  # fmt: skip
        else:
            self.log.info("Creating MPIJob %s/%s", self.namespace, body["metadata"]["name"])
            name = str(api.create(body)["metadata"]["name"])
        self._job = name
        return name

    @staticmethod
    def _deadline(seconds: float) -> str:
        return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()

    def _follow(self, api: MPIJobApi, name: str) -> str:
        """Non-deferrable waiting: stream the launcher log into the task log, then poll to the end."""
        started = time.monotonic()
        pod = None
        while pod is None or pod.status.phase not in ("Running", "Succeeded", "Failed"):
            job = api.get(name)
            if job is not None and job_state(job.get("status")) != "Running":
                return job_state(job.get("status"))
            if time.monotonic() - started > self.startup_timeout_seconds:
                return "NotStarted"
            time.sleep(self.poll_interval)
            pod = api.launcher_pod(name)

        def running() -> bool:
            found = api.launcher_pod(name)
            return found is not None and found.status.phase in ("Pending", "Running")

        for line in api.follow_log(pod.metadata.name, running):
            self.log.info("[launcher] %s", line)
        deadline = started + self.startup_timeout_seconds + self.timeout_seconds
        while time.monotonic() < deadline:
            job = api.get(name)
            state = "Deleted" if job is None else job_state(job.get("status"))
            if state != "Running":
                return state
            time.sleep(self.poll_interval)
        return "TimedOut"

    def _finish(self, api: MPIJobApi, name: str, state: str, message: str | None = None) -> Any:
        """Recover the result from the launcher's full log; delete a succeeded job, keep a failed one."""
        where = f"MPIJob {self.namespace}/{name}"
        if state != "Succeeded":
            self._log_launcher_tail(api, name)
            self._job = None
            reason = {
                "Failed": "failed; see the launcher log above",
                "NotStarted": f"did not start within {self.startup_timeout_seconds}s "
                "(no nodes for its workers?)",
                "TimedOut": f"ran past its {self.timeout_seconds}s timeout",
                "Deleted": "was deleted before it finished",
            }.get(state, f"ended {state}")
            detail = f": {message}" if message else ""
            keep = f"the job is kept for `kubectl -n {self.namespace} describe mpijob {name}`"
            raise AirflowException(f"{where} {reason}{detail}; {keep}")
        pod = api.launcher_pod(name)
        result = result_from_log(api.read_log(pod.metadata.name)) if pod is not None else None
        if result is None:
            raise AirflowException(f"{where} succeeded but its launcher logged no result "
                                   f"(launcher pod {'found' if pod else 'gone'}); job kept")  # fmt: skip
        self.log.info("Deleting %s and its pods", where)
        api.delete(name)
        self._job = None
        return result

    def _log_launcher_tail(self, api: MPIJobApi, name: str, lines: int = 50) -> None:
        try:
            pod = api.launcher_pod(name)
            for line in api.read_log(pod.metadata.name)[-lines:] if pod is not None else []:
                self.log.info("[launcher] %s", line)
        except Exception as exc:  # the failure itself is what the task reports
            self.log.warning("could not read the launcher log of %s: %s", name, exc)

    def on_kill(self) -> None:
        """Marked failed or stopped by a user: stop the training too (a retry would start fresh)."""
        if self._job:
            self.log.info("Task killed: deleting MPIJob %s/%s", self.namespace, self._job)
            self.api().delete(self._job)

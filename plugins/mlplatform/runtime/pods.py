"""The one place that turns a step's resource profile into Kubernetes pod pieces.

KubernetesPodOperator takes these as arguments; the MPIJob's launcher and worker templates are built
from the same pieces, so a security or scheduling rule is written once for both.

Every kubernetes-client model copies the client's default Configuration when built (~0.25 ms
each); with hundreds of DAGs that dominated parse time. The pieces depend only on the (frozen,
hashable) profile, so each distinct one is built once per process and shared: operators keep them
read-only and the pod operator deep-copies the pod before adding its sidecar. Lists are returned as
fresh copies so no caller can append into another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from kubernetes.client import models as k8s

from mlplatform.profiles import ResourceProfile
from mlplatform_contract.environment import control_plane
from mlplatform_contract.registry_access import (
    ENV_PASSWORD,
    ENV_USERNAME,
    STEP_ROLES,
    step_username,
)
from mlplatform_contract.steps import (
    ENV_CRM_API_TOKEN,
    ENV_CRM_BASE_URL,
    ENV_GIT_SHA,
    ENV_IMAGE_DIGEST,
    ENV_TRY_NUMBER,
    StepKind,
)

RUN_AS_USER = 10001
# Spark on Kubernetes (ingest with data.spark.executors > 0): names shared with helm/platform and
# the workload's model_steps/spark_config.py.
SPARK_TEMPLATE_CONFIGMAP = "spark-executor-pod-template"
SPARK_TEMPLATE_DIR = "/etc/mlops/spark"
IN_CLUSTER_API = "k8s://https://kubernetes.default.svc"
GPU_RESOURCE = "nvidia.com/gpu"
# The CA of MLflow's TLS certificate (cert-manager, helm/platform templates/mlflow-tls.yaml: a
# trust-manager Bundle writes it into this ConfigMap of the steps' namespace), mounted on the pods
# of the steps that call MLflow; MLflow's client and the steps' health probe trust it.
MLFLOW_CA_CONFIGMAP = "mlflow-ca"
MLFLOW_CA_DIR = "/etc/mlops/mlflow-ca"
MLFLOW_CA_KEY = "ca.crt"
ENV_MLFLOW_CA = "MLFLOW_TRACKING_SERVER_CERT_PATH"
NODE_POOL_LABEL = "mlops.io/node-pool"
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"


@dataclass(frozen=True)
class ClusterSettings:
    """Names shared with the Helm platform chart (helm/platform) and Terraform's IRSA roles."""

    namespace: str = field(default_factory=lambda: control_plane().k8s_namespace)
    step_env_configmap: str = "step-env"
    kubernetes_conn_id: str = field(default_factory=lambda: control_plane().k8s_conn_id)
    deferrable: bool = field(default_factory=lambda: control_plane().k8s_deferrable)
    # Spark executors: their own namespace and account (helm/platform values sparkExecutors), where
    # an admission policy limits what the driver may create.
    spark_namespace: str = field(default_factory=lambda: control_plane().k8s_spark_namespace)
    spark_executor_account: str = "spark-executor"

    @staticmethod
    def service_account(step: StepKind) -> str:
        """One IRSA-annotated service account per step kind: least privilege per kind."""
        return f"step-{step}"


@cache
def resources(profile: ResourceProfile) -> k8s.V1ResourceRequirements:
    """Requests equal limits (Guaranteed QoS): batch steps should not be throttled or evicted."""
    amounts = {"cpu": profile.cpu, "memory": profile.memory}
    if profile.gpu:
        amounts[GPU_RESOURCE] = str(profile.gpu)
    return k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def volumes(profile: ResourceProfile) -> list[k8s.V1Volume]:
    return list(_volumes(profile))


@cache
def _volumes(profile: ResourceProfile) -> tuple[k8s.V1Volume, ...]:
    found = [
        k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=profile.tmp_size))
    ]
    if profile.shm_size:
        found.append(k8s.V1Volume(
            name="dshm",
            empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=profile.shm_size),
        ))  # fmt: skip
    return tuple(found)


def volume_mounts(profile: ResourceProfile) -> list[k8s.V1VolumeMount]:
    return list(_volume_mounts(profile))


@cache
def _volume_mounts(profile: ResourceProfile) -> tuple[k8s.V1VolumeMount, ...]:
    mounts = [k8s.V1VolumeMount(name="tmp", mount_path="/tmp")]
    if profile.shm_size:
        mounts.append(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    return tuple(mounts)


def node_selector(profile: ResourceProfile) -> dict[str, str]:
    selector = {NODE_POOL_LABEL: profile.node_pool}
    if not profile.spot:
        selector[CAPACITY_TYPE_LABEL] = "ON_DEMAND"
    return selector


def tolerations(profile: ResourceProfile) -> list[k8s.V1Toleration]:
    return [_gpu_toleration()] if profile.gpu else []


@cache
def _gpu_toleration() -> k8s.V1Toleration:
    return k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")


@cache
def pod_security_context() -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        fs_group=RUN_AS_USER,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


@cache
def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        privileged=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def crm_secret_name(connection_id: str) -> str:
    """The Secret with a customer's CRM token (and base URL, if it has its own CRM endpoint): named
    after the Airflow connection the local runtime reads, so one setting means the same in both."""
    return connection_id.replace("_", "-")


def env_from(cluster: ClusterSettings) -> list[k8s.V1EnvFromSource]:
    """Platform-wide settings from the chart's ConfigMap (every step pod)."""
    return list(_env_from(cluster.step_env_configmap))


@cache
def _env_from(configmap: str) -> tuple[k8s.V1EnvFromSource, ...]:
    return (k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=configmap)),)


# The keys the publish pod takes from the customer's CRM Secret, and whether each must be there.
CRM_SECRET_KEYS: tuple[tuple[str, bool], ...] = (
    (ENV_CRM_API_TOKEN, True),
    (ENV_CRM_BASE_URL, False),
)


def crm_env(step: StepKind, crm_connection_id: str) -> list[k8s.V1EnvVar]:
    """The publish pod's CRM token (and the customer's own base URL, if its Secret has one), key by
    key from the Secret the customer's crm.connection_id names (spec.py allows only the shared CRM
    or the customer's own). An ``env`` entry wins over the ConfigMap's CRM_BASE_URL default; an
    optional key the Secret lacks leaves that default. Other steps get no Secret at all."""
    if step != "publish":
        return []
    return list(_crm_env(crm_secret_name(crm_connection_id)))


@cache
def _crm_env(secret: str) -> tuple[k8s.V1EnvVar, ...]:
    return tuple(
        k8s.V1EnvVar(
            name=key,
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(
                    name=secret, key=key, optional=None if required else True
                )
            ),
        )
        for key, required in CRM_SECRET_KEYS
    )


def registry_secret_name(user: str) -> str:
    """The Secret holding one registry identity (``scorer@acme-foods`` -> ``mlflow-scorer-acme-foods``),
    written by the registry provisioning job, keys ``username`` and ``password``."""
    return "mlflow-" + user.replace("@", "-")


def registry_env(step: str, customer: str) -> list[k8s.V1EnvVar]:
    """The step's own MLflow identity, key by key from its Secret, and the CA its client trusts;
    none for a step that never calls MLflow (mlplatform_contract.registry_access.STEP_ROLES)."""
    user = step_username(step, customer)
    if not user:
        return []
    secret = registry_secret_name(user)
    return [
        k8s.V1EnvVar(name=env, value_from=k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)))
        for env, key in ((ENV_USERNAME, "username"), (ENV_PASSWORD, "password"))
    ] + [k8s.V1EnvVar(name=ENV_MLFLOW_CA, value=f"{MLFLOW_CA_DIR}/{MLFLOW_CA_KEY}")]  # fmt: skip


def registry_ca_volume(step: str) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The MLflow CA ConfigMap (one key), mounted read-only on the steps that call MLflow only."""
    if step not in STEP_ROLES:
        return [], []
    volume, mount = _registry_ca_volume()
    return [volume], [mount]


@cache
def _registry_ca_volume() -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    source = k8s.V1ConfigMapVolumeSource(
        name=MLFLOW_CA_CONFIGMAP, items=[k8s.V1KeyToPath(key=MLFLOW_CA_KEY, path=MLFLOW_CA_KEY)]
    )
    return (
        k8s.V1Volume(name="mlflow-ca", config_map=source),
        k8s.V1VolumeMount(name="mlflow-ca", mount_path=MLFLOW_CA_DIR, read_only=True),
    )


def lineage_env(image: str, commit: str | None) -> dict[str, str]:
    """What MLflow records of a step's code: the image it runs (pinned by digest) and the commit CI
    built it from. Plain strings: the pod operator keeps a dict as is until it builds the pod."""
    return {ENV_IMAGE_DIGEST: image, **({ENV_GIT_SHA: commit} if commit else {})}


def try_number_env() -> list[k8s.V1EnvVar]:
    """The Airflow try, from the ``try_number`` label the pod operator puts on its pods."""
    return list(_try_number_env())


@cache
def _try_number_env() -> tuple[k8s.V1EnvVar, ...]:
    label = k8s.V1ObjectFieldSelector(field_path="metadata.labels['try_number']")
    return (k8s.V1EnvVar(name=ENV_TRY_NUMBER, value_from=k8s.V1EnvVarSource(field_ref=label)),)


def spark_driver_env(image: str, cluster: ClusterSettings) -> dict[str, str]:
    """What makes an ingest pod a Spark driver with executor pods (model_steps/spark_config.py):
    the executors run the same image by digest, in their own namespace, as their own account (IRSA:
    the ingest role, which reads and writes the lake)."""
    return {
        "MLOPS_SPARK_MASTER": IN_CLUSTER_API,
        "SPARK_EXECUTOR_IMAGE": image,
        "SPARK_EXECUTOR_NAMESPACE": cluster.spark_namespace,
        "SPARK_EXECUTOR_SERVICE_ACCOUNT": cluster.spark_executor_account,
        "SPARK_DRIVER_NAMESPACE": cluster.namespace,
    }


@cache
def _pod_ip_env() -> tuple[k8s.V1EnvVar, ...]:
    ip = k8s.V1ObjectFieldSelector(field_path="status.podIP")
    return (k8s.V1EnvVar(name="POD_IP", value_from=k8s.V1EnvVarSource(field_ref=ip)),)


def pod_ip_env() -> list[k8s.V1EnvVar]:
    """The pod's IP, which executors dial back to (the driver's spark.driver.host)."""
    return list(_pod_ip_env())


@cache
def _spark_template_volume() -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    source = k8s.V1ConfigMapVolumeSource(name=SPARK_TEMPLATE_CONFIGMAP)
    return (
        k8s.V1Volume(name="spark-executor-template", config_map=source),
        k8s.V1VolumeMount(
            name="spark-executor-template", mount_path=SPARK_TEMPLATE_DIR, read_only=True
        ),
    )


def spark_template_volume() -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    """The platform chart's executor pod template, mounted where spark_config expects it."""
    return _spark_template_volume()

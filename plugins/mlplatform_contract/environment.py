"""The deployment environment as settings: every variable the platform reads, typed, defaulted and
validated in one place (pydantic-settings), one class per side.

* :class:`ControlPlaneEnvironment`: what the scheduler, DAG processor and workers read
  (``MLOPS_RUNTIME``, the cluster's names, where the workload venv, the image manifest, the model
  packages and the notifications are). :func:`control_plane` reads it from ``os.environ``.
* :class:`StepEnvironment`: what a step reads (``LAKE_URI``, ``SCORES_URI``, MLflow, the
  Pushgateway, the CRM credentials, lineage, the Spark driver's pod wiring). A step validates the
  environment it was given (``StepContext.env``) with :meth:`StepEnvironment.of`.

A bad value fails with the variable's name and why (:class:`EnvironmentError_`), instead of a
default silently taking over somewhere down the line. The contract's *names* of step variables are in
``mlplatform_contract.steps``; this module is where their values are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlplatform_contract import steps

# The namespace the steps run in: the Helm platform chart's, the pods' and the Spark executors'.
STEPS_NAMESPACE = "ml-steps"
SPARK_NAMESPACE = "ml-spark"  # Spark executors: their own namespace, no platform Secrets (helm)
RUNTIMES: tuple[str, ...] = ("local", "kubernetes")  # mlplatform.runtime.Runtime


class EnvironmentError_(ValueError):
    """A variable of the deployment environment has a value the platform cannot use."""


def _read(cls: type[BaseSettings], data: Mapping[str, str] | None) -> Any:
    try:
        return cls() if data is None else cls.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = cls.model_fields.get(str(error["loc"][0]))
            alias = field.validation_alias if field else None
            names = alias.choices if isinstance(alias, AliasChoices) else [alias or error["loc"][0]]
            problems.append(f"{' or '.join(map(str, names))}: {error['msg']}")
        raise EnvironmentError_("invalid environment: " + "; ".join(problems)) from None


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


class ControlPlaneEnvironment(_Environment):
    runtime: Literal["local", "kubernetes"] = Field(
        "local", validation_alias=_env("MLOPS_RUNTIME"), description="where steps run"
    )
    k8s_namespace: str = Field(STEPS_NAMESPACE, validation_alias=_env("MLOPS_K8S_NAMESPACE"))
    k8s_spark_namespace: str = Field(
        SPARK_NAMESPACE, validation_alias=_env("MLOPS_K8S_SPARK_NAMESPACE")
    )
    # local runtime: the registry identities' passwords (docs/registry-access.md); never a step's
    registry_credentials: str = Field("", validation_alias=_env("MLOPS_REGISTRY_CREDENTIALS"))
    k8s_conn_id: str = Field("kubernetes_default", validation_alias=_env("MLOPS_K8S_CONN_ID"))
    k8s_deferrable: bool = Field(False, validation_alias=_env("MLOPS_K8S_DEFERRABLE"))
    steps_venv: Path | None = Field(None, validation_alias=_env("MLOPS_STEPS_VENV"))
    image_manifest: Path | None = Field(None, validation_alias=_env("MLOPS_IMAGE_MANIFEST"))
    models_path: Path | None = Field(None, validation_alias=_env("MLOPS_MODELS_PATH"))
    tuning: str = Field("", validation_alias=_env("MLOPS_TUNING"), description="JSON, partial")
    notify_file: Path | None = Field(None, validation_alias=_env("MLOPS_NOTIFY_FILE"))
    notify_owners: str = Field("", validation_alias=_env("MLOPS_NOTIFY_OWNERS"), description="JSON")

    @field_validator("runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        value = str(value).strip().lower()
        if value not in RUNTIMES:
            raise ValueError(
                f"MLOPS_RUNTIME={value!r} is not a runtime; use one of {', '.join(RUNTIMES)}"
            )
        return value

    @field_validator("steps_venv", "image_manifest", "models_path", "notify_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return None if value == "" else value


def control_plane(environ: Mapping[str, str] | None = None) -> ControlPlaneEnvironment:
    """The control plane's environment (``os.environ`` unless given), validated."""
    return _read(ControlPlaneEnvironment, environ)


class StepEnvironment(_Environment):
    # the step process itself: where its result goes, how much it logs, which Horovod rank it is
    xcom_path: str = Field(steps.POD_XCOM_PATH, validation_alias=_env(steps.ENV_XCOM_PATH))
    log_level: str = Field("INFO", validation_alias=_env("STEP_LOG_LEVEL"))
    rank: int = Field(0, ge=0, validation_alias=_env("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK"))
    lake_uri: str = Field("", validation_alias=_env(steps.ENV_LAKE_URI))
    scores_uri: str = Field("", validation_alias=_env(steps.ENV_SCORES_URI))
    mlflow_tracking_uri: str = Field("", validation_alias=_env(steps.ENV_MLFLOW_URI))
    mlflow_wait_s: float = Field(60.0, ge=0, validation_alias=_env("MLOPS_MLFLOW_WAIT_S"))
    pushgateway_url: str = Field("", validation_alias=_env("MLOPS_PUSHGATEWAY_URL"))
    crm_base_url: str = Field("", validation_alias=_env(steps.ENV_CRM_BASE_URL))
    crm_api_token: SecretStr = Field(SecretStr(""), validation_alias=_env(steps.ENV_CRM_API_TOKEN))
    runtime: str = Field("local", validation_alias=_env("MLOPS_RUNTIME"))
    image_digest: str = Field("unknown", validation_alias=_env(steps.ENV_IMAGE_DIGEST))
    git_sha: str = Field("", validation_alias=_env(steps.ENV_GIT_SHA))
    try_number: str = Field("", validation_alias=_env(steps.ENV_TRY_NUMBER))
    dag_id: str = Field("", validation_alias=_env("AIRFLOW_CTX_DAG_ID"))
    dag_run_id: str = Field("", validation_alias=_env("AIRFLOW_CTX_DAG_RUN_ID"))
    task_id: str = Field("", validation_alias=_env("AIRFLOW_CTX_TASK_ID"))
    # Spark (ingest, monitor): the master, S3, and in client mode the executors beside this pod
    spark_master: str = Field("", validation_alias=_env("MLOPS_SPARK_MASTER"))
    aws_region: str = Field("", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))
    s3_endpoint_url: str = Field("", validation_alias=_env("S3_ENDPOINT_URL"))
    spark_executor_image: str = Field("", validation_alias=_env("SPARK_EXECUTOR_IMAGE"))
    spark_executor_service_account: str = Field(
        "spark-executor", validation_alias=_env("SPARK_EXECUTOR_SERVICE_ACCOUNT")
    )
    spark_executor_namespace: str = Field(
        SPARK_NAMESPACE, validation_alias=_env("SPARK_EXECUTOR_NAMESPACE")
    )
    # the driver's (the step pod's) namespace; executors in another one are not owned by it
    spark_driver_namespace: str = Field("", validation_alias=_env("SPARK_DRIVER_NAMESPACE"))
    hostname: str = Field("", validation_alias=_env("HOSTNAME"))
    pod_ip: str = Field("0.0.0.0", validation_alias=_env("POD_IP"))

    @classmethod
    def of(cls, env: Mapping[str, str] | None = None) -> StepEnvironment:
        """A step's environment (``os.environ`` unless given: the step's ``ctx.env``), validated."""
        return _read(cls, env)

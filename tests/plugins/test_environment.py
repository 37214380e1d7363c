"""The deployment environment as settings (mlplatform_contract.environment): typed defaults, and a
bad value fails naming the variable instead of a default quietly taking over."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform_contract.environment import (
    SPARK_NAMESPACE,
    STEPS_NAMESPACE,
    EnvironmentError_,
    StepEnvironment,
    control_plane,
)


def test_control_plane_defaults_and_values() -> None:
    empty = control_plane({})
    assert (empty.runtime, empty.k8s_namespace, empty.k8s_deferrable) == (
        "local", STEPS_NAMESPACE, False,
    )  # fmt: skip
    assert empty.steps_venv is None and empty.models_path is None and empty.tuning == ""
    given = control_plane({"MLOPS_RUNTIME": " Kubernetes ", "MLOPS_K8S_DEFERRABLE": "true",
                           "MLOPS_MODELS_PATH": "/srv/models", "MLOPS_STEPS_VENV": ""})  # fmt: skip
    assert given.runtime == "kubernetes" and given.k8s_deferrable is True
    assert given.models_path == Path("/srv/models") and given.steps_venv is None


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(EnvironmentError_, match="MLOPS_RUNTIME='k8s' is not a runtime"):
        control_plane({"MLOPS_RUNTIME": "k8s"})
    with pytest.raises(EnvironmentError_, match="MLOPS_K8S_DEFERRABLE"):
        control_plane({"MLOPS_K8S_DEFERRABLE": "maybe"})
    with pytest.raises(EnvironmentError_, match="MLOPS_MLFLOW_WAIT_S"):
        StepEnvironment.of({"MLOPS_MLFLOW_WAIT_S": "-1"})


def test_step_environment_reads_the_steps_mapping_and_hides_the_token() -> None:
    env = StepEnvironment.of({"LAKE_URI": "s3://lake", "CRM_API_TOKEN": " s3cret\n",
                              "AWS_DEFAULT_REGION": "eu-west-1", "OMPI_COMM_WORLD_RANK": "3"})  # fmt: skip
    assert env.lake_uri == "s3://lake" and env.scores_uri == "" and env.aws_region == "eu-west-1"
    assert env.crm_api_token.get_secret_value() == "s3cret" and "s3cret" not in repr(env)
    assert env.rank == 3 and env.spark_executor_namespace == SPARK_NAMESPACE
    assert env.xcom_path == "/airflow/xcom/return.json" and env.mlflow_wait_s == 60.0

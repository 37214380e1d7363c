"""The publish step's CRM credentials in the local runtime: the Airflow connection named by
crm.connection_id becomes CRM_BASE_URL / CRM_API_TOKEN in the step's environment only."""

from __future__ import annotations

import hashlib
import json

import pytest
from airflow.sdk.exceptions import AirflowException
from pydantic import ValidationError

from mlplatform.factory import build_dag
from mlplatform.runtime.local import LocalStepOperator, crm_env
from mlplatform.settings import CrmSettings
from mlplatform.spec import PipelineSpecError, parse_pipeline, resolve_customers

TOKEN = "conn-token-4be1c9d0f2"

SHOW_ENV = (
    "import hashlib, json, os\n"
    "t = os.environ.get('CRM_API_TOKEN', '')\n"
    "json.dump({'url': os.environ.get('CRM_BASE_URL'), 'sha': hashlib.sha256(t.encode()).hexdigest()},"
    " open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
)


@pytest.fixture(autouse=True)
def no_crm_env(monkeypatch):
    for name in (
        "CRM_BASE_URL",
        "CRM_API_TOKEN",
        "AIRFLOW_CONN_CRM_DEFAULT",
        "AIRFLOW_CONN_CRM_ACME",
    ):
        monkeypatch.delenv(name, raising=False)


def test_uri_connection_becomes_base_url_and_token(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", f"http://:{TOKEN}@127.0.0.1:8765")
    assert crm_env("crm_default") == {
        "CRM_BASE_URL": "http://127.0.0.1:8765",
        "CRM_API_TOKEN": TOKEN,
    }


def test_json_connection_with_a_full_base_url_and_extra_token(monkeypatch):
    conn = {"conn_type": "http", "host": "https://crm.example.com/api/", "extra": {"token": TOKEN}}
    monkeypatch.setenv("AIRFLOW_CONN_CRM_ACME", json.dumps(conn))
    assert crm_env("crm_acme") == {
        "CRM_BASE_URL": "https://crm.example.com/api",
        "CRM_API_TOKEN": TOKEN,
    }


def test_missing_connection_is_explained_unless_the_worker_has_the_variables(monkeypatch):
    with pytest.raises(AirflowException, match=r"AIRFLOW_CONN_CRM_DEFAULT='http://:<token>@"):
        crm_env("crm_default")
    monkeypatch.setenv("CRM_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("CRM_API_TOKEN", TOKEN)
    assert crm_env("crm_default") == {"CRM_BASE_URL": "http://127.0.0.1:1", "CRM_API_TOKEN": TOKEN}


def test_connection_without_a_token_is_an_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", "http://127.0.0.1:8765")
    with pytest.raises(AirflowException, match="'crm_default' has no password"):
        crm_env("crm_default")


def test_operator_passes_the_connection_to_the_step_and_never_logs_it(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", f"https://:{TOKEN}@crm.example.com")
    op = LocalStepOperator(
        task_id="publish", arguments=["python", "-c", SHOW_ENV], crm_connection_id="crm_default"
    )
    result = op.execute({})
    assert result == {
        "url": "https://crm.example.com",
        "sha": hashlib.sha256(TOKEN.encode()).hexdigest(),
    }
    assert TOKEN not in capsys.readouterr().out
    assert not any(k.startswith("CRM_") for k in op.env_vars)  # a template field the UI renders


def test_a_step_that_prints_the_token_has_it_masked_in_the_task_log(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", f"https://:{TOKEN}@crm.example.com")
    script = "import os, sys; print('oops', os.environ['CRM_API_TOKEN']); sys.exit(1)"
    op = LocalStepOperator(
        task_id="publish", arguments=["python", "-c", script], crm_connection_id="crm_default"
    )
    with pytest.raises(AirflowException) as err:
        op.execute({})
    assert TOKEN not in str(err.value) and "oops ***" in str(err.value)
    assert TOKEN not in capsys.readouterr().out


def test_only_the_publish_task_resolves_the_customers_connection():
    spec = {
        "name": "churn_model",
        "model": "mlmodels.customer_propensity",
        "task": "binary_classification",
        "owner": "retention-ml",
        "description": "Churn.",
        "steps": {"ingest": {}, "score": {}, "publish": {}},
        "customers": [
            {"id": "alpha-co", "tier": "basic"},
            {
                "id": "beta-co",
                "tier": "basic",
                "settings": {"crm": {"connection_id": "crm_beta_co"}},
            },
        ],
        "tiers": {"basic": {}},
    }
    customers = resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py")
    ids = {}
    for customer in customers:
        dag = build_dag(customer, "local")
        ids[customer.id] = {t.task_id: t.crm_connection_id for t in dag.tasks}
    assert ids == {
        "alpha-co": {"ingest": None, "score": None, "publish": "crm_default"},
        "beta-co": {"ingest": None, "score": None, "publish": "crm_beta_co"},
    }


def test_in_the_cluster_each_customer_reads_the_secret_named_after_its_connection(
    runtime, manifest_file
):
    """The same setting means the same CRM in both runtimes: crm_beta_co is the Airflow connection
    locally and the Secret crm-beta-co in the cluster, read only by the publish pod and only key by
    key (the token, and the customer's own base URL if its Secret has one: optional, and an env
    entry wins over step-env's default). No pod loads a Secret whole (envFrom)."""
    runtime("kubernetes", manifest_file())
    spec = {
        "name": "churn_model", "model": "mlmodels.churn", "task": "binary_classification",
        "owner": "retention-ml", "description": "Churn.",
        "steps": {"score": {}, "publish": {}}, "tiers": {"basic": {}},
        "customers": [
            {"id": "alpha-co", "tier": "basic"},
            {"id": "beta-co", "tier": "basic", "settings": {"crm": {"connection_id": "crm_beta_co"}}},
        ],
    }  # fmt: skip
    sources, keys = {}, {}
    for customer in resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py"):
        dag = build_dag(customer, "kubernetes")
        for t in dag.tasks:
            assert [s.config_map_ref.name for s in t.env_from] == ["step-env"], t.task_id
            assert not [s for s in t.env_from if s.secret_ref], t.task_id
            refs = [
                e for e in t.pod_runtime_info_envs if e.value_from and e.value_from.secret_key_ref
            ]
            sources[(customer.id, t.task_id)] = {e.value_from.secret_key_ref.name for e in refs}
            keys[(customer.id, t.task_id)] = {
                (e.name, e.value_from.secret_key_ref.key, e.value_from.secret_key_ref.optional)
                for e in refs
            }
    assert sources == {  # score reads only its own registry identity, never a CRM Secret
        ("alpha-co", "score"): {"mlflow-scorer-alpha-co"},
        ("alpha-co", "publish"): {"crm-default"},
        ("beta-co", "score"): {"mlflow-scorer-beta-co"},
        ("beta-co", "publish"): {"crm-beta-co"},
    }
    assert keys[("beta-co", "publish")] == {
        ("CRM_API_TOKEN", "CRM_API_TOKEN", None),
        ("CRM_BASE_URL", "CRM_BASE_URL", True),
    }


@pytest.mark.parametrize(
    "named",
    ["crm_alpha_co", "mlflow_db", "airflow_metadata_db", "crm_beta", "crm_default_x"],
)
def test_a_connection_id_naming_another_secret_is_refused_at_parse_time(named):
    """A customer may name only the shared CRM or its own: not another customer's CRM Secret, nor
    any other Secret (the error names the file, the customer and the field)."""
    spec = {
        "name": "churn_model", "model": "mlmodels.churn", "task": "binary_classification",
        "owner": "retention-ml", "description": "Churn.",
        "steps": {"publish": {}}, "tiers": {"basic": {}},
        "customers": [{"id": "alpha-co", "tier": "basic"},
                      {"id": "beta-co", "tier": "basic",
                       "settings": {"crm": {"connection_id": named}}}],
    }  # fmt: skip
    with pytest.raises(PipelineSpecError) as caught:
        resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py")
    message = str(caught.value)
    assert "dags/churn.py" in message
    assert f"customers[1] (beta-co).settings.crm.connection_id: {named!r}" in message
    assert "'crm_beta_co'" in message and "'crm_default'" in message


@pytest.mark.parametrize("bad", ["CRM_Beta", "crm beta", "crm_", "x" * 61])
def test_a_connection_id_that_cannot_name_a_secret_is_refused(bad):
    spec = {
        "name": "churn_model", "model": "mlmodels.churn", "task": "binary_classification",
        "owner": "retention-ml", "description": "Churn.",
        "steps": {"publish": {}}, "tiers": {"basic": {}},
        "customers": [{"id": "beta-co", "tier": "basic",
                       "settings": {"crm": {"connection_id": bad}}}],
    }  # fmt: skip
    with pytest.raises(PipelineSpecError, match=r"dags/churn.py: .*crm\.connection_id"):
        resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py")


@pytest.mark.parametrize(
    "bad",
    [{"max_retries": -1}, {"timeout_seconds": 0}, {"backoff_max_seconds": -5},
     {"checkpoint_interval_seconds": -1}, {"batch_size": 0}, {"retries": 3}],
)  # fmt: skip
def test_crm_settings_reject_bad_values(bad):
    with pytest.raises(ValidationError):
        CrmSettings.model_validate(bad)

"""Customer settings are data: STEP_CONFIG (and STEP_MODEL) reach the step exactly as written, in
both runtimes, never rendered as Jinja. A setting that reads like a template cannot pull a
connection's password into the pod spec, the step or MLflow, and a stray "{{" in a text setting
cannot break a run."""

from __future__ import annotations

import json
import textwrap
import types

import pytest

from mlplatform.render import render_context

STEAL = "{{ conn.crm_default.password }}"
STRAY = "s3://acme-lake/reference/{{ weekly {% profile"
PASSWORD = "s3cr3t-crm-token"

DAG_MODULE = textwrap.dedent(
    f'''
    """Airflow DAG module: two customers whose settings look like templates."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {{
        "name": "literal_settings", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "ml-core",
        "description": "Settings that look like Jinja.",
        "steps": {{"ingest": {{}}, "validate": {{}}, "train": {{}}, "publish": {{}}}},
        "tiers": {{"std": {{}}}},
        "customers": [
            {{"id": "steal-co", "tier": "std",
             "settings": {{"validation": {{"reference_profile_uri": {STEAL!r}}}}}}},
            {{"id": "stray-co", "tier": "std",
             "settings": {{"validation": {{"reference_profile_uri": {STRAY!r}}}}}}},
        ],
    }})
    '''
)
EXPECTED = {"steal-co": STEAL, "stray-co": STRAY}
# Prints what the step received: the contract's variables, as the step process sees them.
PROBE = (
    "import json, os\n"
    "json.dump({'config': json.loads(os.environ['STEP_CONFIG']),"
    " 'model': json.loads(os.environ['STEP_MODEL'])}, open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
)


def context_with_a_connection(task) -> dict:
    """A run's template context in which `conn.crm_default.password` would render the token."""
    context = render_context(task)
    context["conn"] = types.SimpleNamespace(
        crm_default=types.SimpleNamespace(password=PASSWORD, host="crm.example.com")
    )
    return context


@pytest.fixture
def dags(dags_folder, dagbag):
    def parse() -> dict:
        bag = dagbag(dags_folder({"literal_settings.py": DAG_MODULE}, with_project=False))
        assert not bag.import_errors, bag.import_errors
        return bag.dags

    return parse


@pytest.mark.parametrize("customer", sorted(EXPECTED))
def test_local_runtime_hands_the_setting_to_the_step_as_written(runtime, dags, customer):
    runtime("local")
    task = dags()[f"literal_settings__{customer}"].get_task("validate")
    task.render_template_fields(context_with_a_connection(task))
    task.arguments = ["python", "-c", PROBE]  # the rendered env, seen from inside the step process
    received = task.execute({})
    assert received["config"]["validation"]["reference_profile_uri"] == EXPECTED[customer]
    assert received["model"]["ref"] == "mlmodels.customer_propensity"
    assert PASSWORD not in json.dumps(received)


@pytest.mark.parametrize("customer", sorted(EXPECTED))
def test_kubernetes_runtime_puts_the_setting_in_the_pod_as_written(
    runtime, manifest_file, dags, customer
):
    from kubernetes.client import ApiClient

    runtime("kubernetes", manifest_file())
    for step in ("validate", "publish"):
        task = dags()[f"literal_settings__{customer}"].get_task(step)
        context = context_with_a_connection(task)
        task.render_template_fields(context)
        pod = ApiClient().sanitize_for_serialization(
            task.build_pod_request_obj(context, dry_run=True)
        )
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        config = json.loads(env["STEP_CONFIG"])
        assert config["validation"]["reference_profile_uri"] == EXPECTED[customer], step
        assert json.loads(env["STEP_PARAMS"])["data_date"] is None  # still a template: rendered
        assert PASSWORD not in json.dumps(pod), step

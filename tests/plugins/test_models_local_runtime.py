"""Both example models end to end through the local runtime, on tiny data and the embedded services:
every task of each DAG (the factory's own LocalStepOperators, the model's extra step included) runs
``python -m model_steps <step>`` in the workload venv. Each model trains its own label: the training
tables' columns and the registered models' MLflow signatures differ as their packages declare, and
the CRM holds each model's own records.

The DAG modules here name the real model packages with test-sized settings (few epochs, lenient
gates), which is also what any data scientist's module does: nothing model-specific is in the
platform."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

from mlplatform.render import render_context
from mlplatform.runtime.local import steps_venv

RUN_ID = "manual__2026-06-29T06:00:00+00:00"
DATA_DATE = "2026-06-29"  # restaurant_chain.datagen.DEFAULT_DATA_DATE
TOKEN = "two-models-token-5b1e"
STEPS_PY = steps_venv() / "bin" / "python"

MODULE = '''
"""Airflow DAG module of {name} for the two-models test."""
from mlplatform import register_pipeline

register_pipeline(globals(), {{
    "name": "{name}", "model": "mlmodels.{name}", "task": "{task}",
    "owner": "test-team", "description": "{name} on tiny data.",
    "steps": {{"ingest": {{"retries": 0}}, "validate": {{"retries": 0}},
               "train": {{"retries": 0, "local_processes": 1}}, "evaluate": {{"retries": 0}},
               "score": {{"retries": 0}}, "publish": {{"retries": 0}}}},
    "extra_steps": {extra},
    "defaults": {defaults},
    "tiers": {{"t": {{}}}}, "customers": [{{"id": "acme-foods", "tier": "t"}}],
}})
'''
MODELS = {
    "customer_propensity": ("binary_classification", {}, {
        "training": {"epochs": 5, "batch_size": 128, "learning_rate": 0.003},
        # plumbing, not quality (the gate's policy has its own tests): any candidate is promoted
        "gate": {"thresholds": {"roc_auc": 0.0}},
        "model": {"hidden_units": [16]},
    }),
    "next_spend": ("regression", {"spend_report": {"after": "score", "runs_in": "score"}}, {
        "data": {"lookback_days": 180, "label_window_days": 28},
        "validation": {"label_rate_min": 0.0, "label_rate_max": 1.0},
        "training": {"epochs": 5, "batch_size": 128, "learning_rate": 0.003},
        "gate": {"thresholds": {"r2": -10.0}},
        "model": {"deep_units": [16], "vip_fraction": 0.1},
    }),
}  # fmt: skip


def _workload_ready() -> bool:
    probe = [str(STEPS_PY), "-c", "import pyspark, tensorflow, mlflow, mlmodels.next_spend"]
    return STEPS_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _workload_ready(), reason="workload venv without every extra"),
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Embedded S3 + MLflow, the CRM receiver and a tiny raw zone, for the whole module."""
    root = tmp_path_factory.mktemp("two-models")
    state, lake = root / "services", f"file://{root}/lake"
    up = [str(STEPS_PY), "-m", "embedded.services", "up", "--state", str(state),
          "--bucket", "mlops-scores"]  # fmt: skip
    subprocess.run(up, check=True, capture_output=True, cwd=REPO)
    receiver = subprocess.Popen(
        [str(STEPS_PY), "-m", "embedded.crm_receiver", "--db", str(root / "crm.sqlite"),
         "--port", "0", "--token", TOKEN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    crm = receiver.stdout.readline().split("listening on ", 1)[1].split()[0]
    subprocess.run([str(STEPS_PY), "-m", "mlmodels.restaurant_chain.datagen", "--customer",
                    "acme-foods", "--lake", lake, "--diners", "1500", "--seed", "5"],
                   check=True, capture_output=True)  # fmt: skip
    services = json.loads((state / "services.json").read_text())
    env = {**services["env"], "LAKE_URI": lake, "SCORES_URI": "s3://mlops-scores",
           "AIRFLOW_CONN_CRM_DEFAULT": f"http://:{TOKEN}@{crm.removeprefix('http://')}"}  # fmt: skip
    try:
        yield {"root": root, "env": env, "crm": crm}
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        subprocess.run([str(STEPS_PY), "-m", "embedded.services", "down", "--state", str(state)],
                       cwd=REPO, check=False, capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def results(platform, tmp_path_factory):
    """Every task of each model's DAG, in DAG order, through the local runtime."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path_factory.mktemp("dags")
    for name, (task, extra, defaults) in MODELS.items():
        text = MODULE.format(name=name, task=task, extra=json.dumps(extra),
                             defaults=json.dumps(defaults))  # fmt: skip
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    saved = {k: os.environ.get(k) for k in (*platform["env"], "MLOPS_RUNTIME")}
    os.environ.update(platform["env"], MLOPS_RUNTIME="local")
    try:
        bag = DagBag(dag_folder=str(folder))
        assert bag.import_errors == {}
        out = {}
        for name in MODELS:
            dag = bag.dags[f"{name}__acme-foods"]
            out[name] = {t.task_id: _execute(t) for t in dag.topological_sort()}
        return out
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _execute(task) -> dict:
    context = render_context(task, run_id=RUN_ID)
    context["params"] = {**context["params"], "data_date": DATA_DATE}
    task.render_template_fields(context)
    return task.execute(context)


def _manifest(result: dict) -> dict:
    path = Path(result["manifest_uri"].removeprefix("file://"))
    return json.loads(path.read_text())


def test_each_model_trains_its_own_label_on_its_own_features(results) -> None:
    propensity, spend = results["customer_propensity"], results["next_spend"]
    p_schema = _manifest(propensity["ingest"])["schema"]
    s_schema = _manifest(spend["ingest"])["schema"]
    assert p_schema["label"] == "int" and "spend_next" not in p_schema
    assert s_schema["spend_next"] == "double" and "label" not in s_schema
    assert "open_rate" in p_schema and "open_rate" not in s_schema  # email features: one model
    assert "spend_prev_28d" in s_schema and "spend_prev_28d" not in p_schema
    assert propensity["train"]["task"] == "binary_classification"
    assert set(propensity["train"]["metrics"]) >= {"roc_auc", "brier"}
    assert spend["train"]["task"] == "regression"
    assert set(spend["train"]["metrics"]) >= {"rmse", "mae", "r2"}
    assert spend["evaluate"]["promote"] and propensity["evaluate"]["promote"]


def test_the_registered_models_signatures_differ_as_declared(results, platform) -> None:
    script = textwrap.dedent("""
        import json, sys, mlflow
        info = mlflow.models.get_model_info(sys.argv[1])
        print(json.dumps({"inputs": info.signature.inputs.input_names(),
                          "outputs": info.signature.outputs.input_names()}))
    """)
    signatures = {}
    for name, result in results.items():
        proc = subprocess.run([str(STEPS_PY), "-c", script, result["train"]["model_uri"]],
                              env={**platform["env"], "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True)  # fmt: skip
        signatures[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    propensity, spend = signatures["customer_propensity"], signatures["next_spend"]
    assert propensity["outputs"] == ["score"] and spend["outputs"] == ["prediction"]
    assert "click_rate" in propensity["inputs"] and "click_rate" not in spend["inputs"]
    assert (
        "favourite_channel" in spend["inputs"] and "favourite_channel" not in propensity["inputs"]
    )


def test_the_crm_holds_each_models_own_records_and_the_extra_step_reported(results, platform):
    request = urllib.request.Request(f"{platform['crm']}/v1/contacts?limit=10000",
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    records = json.loads(urllib.request.urlopen(request, timeout=10).read())["records"]
    by_model: dict[str, list[dict]] = {}
    for record in records:
        by_model.setdefault(record["model"], []).append(record)
    assert (
        len(by_model["customer_propensity"]) == results["customer_propensity"]["publish"]["records"]
    )
    assert len(by_model["next_spend"]) == results["next_spend"]["publish"]["records"]
    assert {"offer_code", "propensity_score"} <= set(by_model["customer_propensity"][0])
    assert by_model["next_spend"][0]["segment"] == "vip"
    assert "expected_spend_28d" in by_model["next_spend"][0]
    report = results["next_spend"]["spend_report"]
    assert report["diners"] == results["next_spend"]["score"]["rows"]
    assert Path(report["report_uri"].removeprefix("file://")).read_text().startswith("<!doctype")

"""Ingest -> validate of customer_propensity through the local runtime.

The passing run is the session's shared one (tests/two_models.py: the factory's LocalStepOperators
under ``airflow dags test``, with dags/customer_propensity.py's data settings); the failing retry is
the real DAG module's ingest task, rendered with a run context and executed here: it runs
``python -m model_steps ingest ...`` in the workload venv, as a pod would run it. Needs the workload
venv with the ingest/validate extras (``make setup``) and Java for Spark; skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from airflow.sdk.exceptions import AirflowException
from conftest import DAGS

from mlplatform.render import render_context
from mlplatform.runtime.local import steps_venv

DATA_DATE = (
    "2026-06-29"  # the example data's last drop day (restaurant_chain.datagen.DEFAULT_DATA_DATE)
)


def _workload_ready() -> bool:
    python = steps_venv() / "bin" / "python"
    if not python.exists() or shutil.which("java") is None:
        return False
    probe = [str(python), "-c", "import pyspark, great_expectations"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not _workload_ready(), reason="workload venv without ingest/validate extras"
    ),
]


def _execute(task, run_id: str) -> dict:
    context = render_context(task, run_id=run_id)
    context["params"] = {**context["params"], "data_date": DATA_DATE}
    task.render_template_fields(context)
    return task.execute(context)


def test_ingest_then_validate_through_local_step_operators(two_models) -> None:
    ingest = two_models.result("customer_propensity", "ingest")
    validate = two_models.result("customer_propensity", "validate")
    assert ingest["status"] == "passed" and ingest["rows"] > 500
    assert validate["status"] == "passed", validate
    assert validate["features_uri"] == ingest["features_uri"]
    assert validate["data_docs_uri"].endswith("data_docs/index.html")
    lake = two_models.lake
    summary = json.loads((lake / validate["validation_uri"][len(f"file://{lake}/") :] /
                          "summary.json").read_text())  # fmt: skip
    assert summary["status"] == "passed"


def test_a_broken_raw_file_fails_the_retried_ingest_and_commits_nothing(
    two_models, runtime, dagbag, tmp_path, monkeypatch
):
    """A retry of the shared run's ingest (the real DAG module's task, same run id) on a copy of its
    lake where one raw file went bad: the task fails with the step's message, and the table the first
    try committed is untouched."""
    lake = tmp_path / "lake"
    shutil.copytree(two_models.lake, lake)
    ingest = two_models.result("customer_propensity", "ingest")
    manifest = lake / ingest["manifest_uri"][len(f"file://{two_models.lake}/") :]
    committed = manifest.read_bytes()
    bad = sorted((lake / "raw" / "customer=acme-foods" / "orders").rglob("*.csv"))[-20]
    lines = bad.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[3], "-5.00", 1)
    bad.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LAKE_URI", f"file://{lake}")  # platform-wide: the runtime passes it on
    runtime("local")
    dag = dagbag(DAGS).dags["customer_propensity__acme-foods"]
    run_id = two_models.runs["customer_propensity"]["run_id"]
    with pytest.raises(AirflowException, match=r"(?s)code 1.*column amount has negative values"):
        _execute(dag.get_task("ingest"), run_id)
    assert manifest.read_bytes() == committed  # the failed retry committed nothing

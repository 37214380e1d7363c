"""Ingest -> validate of the real customer_propensity DAG through the local runtime.

The tasks are the DAG factory's own LocalStepOperators, rendered with a run context and executed:
each one runs ``python -m model_steps <step> ...`` in the workload venv, as a pod would run it, on
a small generated raw zone. Needs the workload venv with the ingest/validate extras (``make setup``)
and Java for Spark; skipped otherwise.
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
RUN_ID = "manual__2026-06-29T06:00:00+00:00"


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


def _execute(task) -> dict:
    context = render_context(task, run_id=RUN_ID)
    context["params"] = {**context["params"], "data_date": DATA_DATE}
    task.render_template_fields(context)
    return task.execute(context)


def test_ingest_then_validate_through_local_step_operators(runtime, dagbag, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    gen = [str(steps_venv() / "bin" / "python"), "-m", "mlmodels.restaurant_chain.datagen",
           "--customer", "acme-foods", "--lake", f"file://{lake}", "--size", "tiny"]  # fmt: skip
    subprocess.run(gen, check=True, capture_output=True)
    monkeypatch.setenv("LAKE_URI", f"file://{lake}")  # platform-wide: the runtime passes it on
    runtime("local")
    dag = dagbag(DAGS).dags["customer_propensity__acme-foods"]

    ingest = _execute(dag.get_task("ingest"))
    assert ingest["status"] == "passed" and ingest["rows"] > 500
    validate = _execute(dag.get_task("validate"))
    assert validate["status"] == "passed", validate
    assert validate["features_uri"] == ingest["features_uri"]
    assert validate["data_docs_uri"].endswith("data_docs/index.html")
    summary = json.loads((lake / validate["validation_uri"][len(f"file://{lake}/") :] /
                          "summary.json").read_text())  # fmt: skip
    assert summary["status"] == "passed"

    # a broken raw file fails the ingest task (a retry of the same run) with the step's message
    bad = sorted((lake / "raw" / "customer=acme-foods" / "orders").rglob("*.csv"))[-20]
    lines = bad.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[3], "-5.00", 1)
    bad.write_text("\n".join(lines) + "\n")
    manifest = lake / ingest["manifest_uri"][len(f"file://{lake}/") :]
    committed = manifest.read_bytes()
    with pytest.raises(AirflowException, match=r"(?s)code 1.*column amount has negative values"):
        _execute(dag.get_task("ingest"))
    assert manifest.read_bytes() == committed  # the failed retry committed nothing

"""`airflow dags test` on a small DAG built by the factory: ingest -> validate, local runtime.

The real thing end to end: Airflow's CLI on a sqlite metadata DB, LocalStepOperator running the
workload CLI in .venv-steps (Spark ingest, Great Expectations validate) against a generated lake.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

AIRFLOW = REPO / ".venv" / "bin" / "airflow"
STEPS_PYTHON = REPO / ".venv-steps" / "bin" / "python"
CUTOFF = "2026-06-15"  # the example data's training cutoff; its drops go on to 2026-06-29
DUE = "2026-06-30"  # a run due then, with no data_date given, uses 2026-06-29 (landing delay 1)

SMALL_MODULE = textwrap.dedent(
    '''
    """Airflow DAG module: the data half of the propensity model, for a quick end-to-end run."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "customer_propensity", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "growth-ml", "description": "Data steps only.",
        "steps": {"ingest": {"retries": 0}, "validate": {"retries": 0}},
        "tiers": {"standard": {}}, "customers": [{"id": "acme-foods", "tier": "standard"}],
    })
    '''
)


@pytest.mark.slow
def test_airflow_dags_test_runs_ingest_then_validate_on_the_scheduled_default(
    tmp_path: Path,
) -> None:
    lake, dags = tmp_path / "lake", tmp_path / "dags"
    dags.mkdir()
    (dags / "small_propensity.py").write_text(SMALL_MODULE)
    gen = subprocess.run(
        [str(STEPS_PYTHON), "-m", "mlmodels.restaurant_chain.datagen", "--customer", "acme-foods",
         "--lake", f"file://{lake}", "--size", "small", "--cutoff", CUTOFF],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO / "plugins"),
        "MLOPS_RUNTIME": "local",
        "LAKE_URI": f"file://{lake}",
    }
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "customer_propensity__acme-foods", DUE],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]
    results = [json.loads(line.split("STEP_RESULT_JSON=", 1)[1].split(" [airflow", 1)[0])
               for line in log.splitlines() if "STEP_RESULT_JSON=" in line]  # fmt: skip
    ingest = next(r for r in results if "manifest_uri" in r)
    validate = next(r for r in results if "data_docs_uri" in r)
    assert ingest["status"] == "passed" and ingest["rows"] > 1000
    # the scheduled default: no data_date given, the run's data date is the day before it was due
    assert "--data-date 2026-06-29" in log or "data_date=2026-06-29" in log, log[-5000:]
    assert ingest["cutoff_date"] == CUTOFF
    assert validate["status"] == "passed" and validate["expectations"]["failed_critical"] == 0
    committed = Path(ingest["manifest_uri"].removeprefix("file://"))
    assert committed.is_file() and str(committed).startswith(str(lake / "features"))

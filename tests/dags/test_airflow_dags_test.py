"""`airflow dags test` on DAGs built by the factory, local runtime: the real thing end to end.

The run is the session's shared one (tests/two_models.py): Airflow's CLI on a sqlite metadata DB,
LocalStepOperator running the workload CLI in .venv-steps (Spark ingest, Great Expectations
validate, training, the gate, scoring, the CRM push) against a generated lake, the DAG due on
2026-06-30 and given no data date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

CUTOFF = "2026-06-15"  # the example data's training cutoff; its drops go on to 2026-06-29
DAG_ID = "customer_propensity__acme-foods"
pytestmark = pytest.mark.slow


def _step_results(log: str) -> list[dict]:
    return [json.loads(line.split("STEP_RESULT_JSON=", 1)[1].split(" [airflow", 1)[0])
            for line in log.splitlines() if "STEP_RESULT_JSON=" in line]  # fmt: skip


def test_airflow_dags_test_runs_ingest_then_validate_on_the_scheduled_default(two_models) -> None:
    log = two_models.logs["customer_propensity"]
    assert "state=success" in log, log[-5000:]
    results = _step_results(log)
    ingest = next(r for r in results if "manifest_uri" in r)
    validate = next(r for r in results if "data_docs_uri" in r)
    assert ingest["status"] == "passed" and ingest["rows"] > 1000
    # the scheduled default: no data_date given, the run's data date is the day before it was due
    assert "--data-date 2026-06-29" in log or "data_date=2026-06-29" in log, log[-5000:]
    assert ingest["cutoff_date"] == CUTOFF
    assert validate["status"] == "passed" and validate["expectations"]["failed_critical"] == 0
    committed = Path(ingest["manifest_uri"].removeprefix("file://"))
    assert committed.is_file() and str(committed).startswith(str(two_models.lake / "features"))


def test_make_run_reads_a_dag_run_from_its_db_and_log(two_models) -> None:
    """What `make run` shows of a DAG run (scripts/example_report.py), read from the shared one: the
    metadata DB's task states and XComs, and each step's time split as the step CLI logged it."""
    sys.path.insert(0, str(REPO / "scripts"))
    from example_report import Progress

    results = two_models.runs["customer_propensity"]
    tasks = results["tasks"]
    steps = ("ingest", "validate", "train", "evaluate", "score", "publish")
    assert {t: tasks[t]["state"] for t in tasks} == dict.fromkeys(steps, "success")
    ingest = _step_results(two_models.logs["customer_propensity"])[0]
    assert tasks["ingest"]["result"] == ingest and tasks["validate"]["duration"] > 0
    progress = Progress(DAG_ID, len(DAG_ID))
    for line in two_models.logs["customer_propensity"].splitlines():
        progress.line(line)
    assert set(progress.times) == set(steps)
    ingest_time, validate_time = progress.times["ingest"], progress.times["validate"]
    assert 0 < ingest_time.startup < ingest_time.total
    assert "interpreter" in ingest_time.detail and "spark session" in ingest_time.detail
    assert "import great_expectations" in validate_time.detail
    assert "import tensorflow" in progress.times["train"].detail

"""ingest -> validate through the contract's command line, exactly as the local runtime runs a step:
``<steps venv>/bin/python -m model_steps <step> --pipeline --customer --run-id --data-date`` with
LAKE_URI, STEP_CONFIG, STEP_XCOM_PATH in the environment, one process per step (the Airflow-level
test through LocalStepOperator lives with the control plane)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasteps_helpers import PIPELINE, RUN_ID, TENANT, model_env

pytestmark = pytest.mark.slow  # starts step processes / servers (not in make test-fast)

CONFIG = {
    "data": {"lookback_days": 365, "label_window_days": 14},
    "validation": {
        "min_rows": 100,
        "max_rows": 50000000,
        "label_rate_min": 0.005,
        "label_rate_max": 0.6,
        "drift_psi_warn": 0.1,
        "drift_psi_fail": 0.25,
    },
}


def _step(step: str, lake: Path, tmp: Path) -> tuple[int, dict | None, str]:
    xcom = tmp / f"{step}.json"
    env = {
        **os.environ,
        "LAKE_URI": f"file://{lake}",
        "STEP_CONFIG": json.dumps(CONFIG),
        "STEP_XCOM_PATH": str(xcom),
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_TRACKING_URI": f"file://{tmp}/mlruns",
        **model_env(),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_steps",
            step,
            "--pipeline",
            PIPELINE,
            "--customer",
            TENANT,
            "--run-id",
            RUN_ID,
            "--data-date",
            "2026-06-29",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, (json.loads(xcom.read_text()) if xcom.exists() else None), proc.stdout


def test_datagen_ingest_validate_through_the_cli(tmp_path):
    lake = tmp_path / "lake"
    gen = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlmodels.restaurant_chain.datagen",
            "--customer",
            TENANT,
            "--lake",
            f"file://{lake}",
            "--size",
            "small",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gen.returncode == 0, gen.stderr
    generated = json.loads(gen.stdout)
    assert (generated["training_cutoff"], generated["data_date"]) == ("2026-06-15", "2026-06-29")

    rc, ingest, log = _step("ingest", lake, tmp_path)
    assert rc == 0, log
    assert ingest["status"] == "passed" and ingest["rows"] > 3000
    assert 0.01 < ingest["label_rate"] < 0.3
    # labelled at the cutoff whose label window ends on the data date; the population as of it
    assert ingest["cutoff_date"] == "2026-06-15"
    assert ingest["population_rows"] >= ingest["rows"]  # later sign-ups are scored too
    population = json.loads(
        (Path(ingest["population_uri"][len("file://") :]) / "_MANIFEST.json").read_text()
    )
    assert population["cutoff_date"] == "2026-06-29" and "label" not in population["schema"]
    manifest = json.loads(Path(ingest["manifest_uri"][len("file://") :]).read_text())
    run_dir = lake / "features" / PIPELINE / f"customer={TENANT}"
    assert [p.name for p in run_dir.glob("run=*/attempt=*")] == [manifest["attempt"]]

    rc, validate, log = _step("validate", lake, tmp_path)
    assert rc == 0, log
    assert validate["status"] == "passed", validate
    assert validate["expectations"]["failed_critical"] == 0
    docs = Path(validate["data_docs_uri"][len("file://") :])
    assert docs.is_file() and "<html" in docs.read_text().lower()
    gx = json.loads(Path(validate["gx_validation_uri"][len("file://") :]).read_text())
    assert gx["features"]["success"] is True
    assert len(gx["features"]["results"]) == validate["expectations"]["evaluated"]
    # the population is checked with the suite less its label expectations
    checked = validate["tables"]["population"]["expectations"]
    assert gx["population"]["success"] is True and checked["failed_critical"] == 0
    assert 0 < checked["evaluated"] < validate["expectations"]["evaluated"]
    assert validate["tables"]["population"]["drift"]["reference"] == "none: the first population"
    # first run: the profile became the drift baseline
    assert (lake / "reference" / PIPELINE / f"customer={TENANT}" / "feature_profile.json").is_file()

    # a retry of the same run overwrites: one attempt, same rows; validate now compares with the baseline
    rc, again, log = _step("ingest", lake, tmp_path)
    assert rc == 0 and again["rows"] == ingest["rows"], log
    assert len(list(run_dir.glob("run=*/attempt=*"))) == 1
    rc, validate2, log = _step("validate", lake, tmp_path)
    assert rc == 0, log
    assert validate2["drift"]["reference"].startswith("first_run_baseline:")
    assert validate2["drift"]["max_psi"] == 0.0
    # the population is compared with the last one that passed (successive scoring snapshots)
    population_drift = validate2["tables"]["population"]["drift"]
    assert population_drift["reference"].startswith("last_population:")
    assert population_drift["max_psi"] == 0.0

    # a population far from the last one only warns (it is what has to be scored): here the
    # "last population" is the training table, two weeks and a campaign to everybody earlier
    reference = lake / "reference" / PIPELINE / f"customer={TENANT}"
    shutil.copy(reference / "feature_profile.json", reference / "population_profile.json")
    rc, validate3, log = _step("validate", lake, tmp_path)
    assert rc == 0, log
    assert validate3["status"] == "passed_with_warnings" and not validate3["errors"]
    (warning,) = validate3["warnings"]
    assert warning.startswith("population table") and "PSI >= 0.25" in warning
    assert "days_since_last_open=" in warning

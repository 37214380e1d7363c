"""ingest -> validate through the contract's command line, exactly as the local runtime runs a step:
``<steps venv>/bin/python -m model_steps <step> --pipeline --customer --run-id --data-date`` with
LAKE_URI, STEP_CONFIG, STEP_XCOM_PATH in the environment, one process per step (the Airflow-level
test through LocalStepOperator lives with the control plane)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datasteps_helpers import PIPELINE, RUN_ID, TENANT

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
            "2026-06-15",
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
            "model_steps.datagen",
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
    assert json.loads(gen.stdout)["data_date"] == "2026-06-15"

    rc, ingest, log = _step("ingest", lake, tmp_path)
    assert rc == 0, log
    assert ingest["status"] == "passed" and ingest["rows"] > 3000
    assert 0.01 < ingest["label_rate"] < 0.3
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
    assert gx["success"] is True and len(gx["results"]) == validate["expectations"]["evaluated"]
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

"""`airflow dags test` on a tuned DAG (tune -> mapped trials -> select -> train): Airflow's own
scheduling of the stage, on a sqlite metadata DB with the factory's LocalStepOperators.

What is checked here is the orchestration, so the workload venv (MLOPS_STEPS_VENV) is a recorder
that speaks the step contract at the process boundary (argv, STEP_TRIAL, the XCom file, the exit
code) in milliseconds; the real steps run the same stage in tests/images/steps/test_tuning.py. The
tune step's XCom is a dict of 3 trials, the trial task is mapped over it (one task per trial, each
given its trial, not the (key, value) pair), trial-01 exits 1, and select (all_done) and train still
run: the DAG run succeeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

AIRFLOW = REPO / ".venv" / "bin" / "airflow"
MODULE = textwrap.dedent(
    '''
    """Airflow DAG module: a tuned train step alone, for the stage's orchestration."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "customer_propensity", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "growth-ml", "description": "Tuned train.",
        "steps": {"train": {"retries": 0, "local_processes": 1}},
        "defaults": {"tuning": {"enabled": True, "trials": 3, "parallel_trials": 2}},
        "tiers": {"standard": {}}, "customers": [{"id": "acme-foods", "tier": "standard"}],
    })
    '''
)
RECORDER = textwrap.dedent(
    """
    import json, os, sys
    step = sys.argv[3]  # python -m model_steps <step> ...
    trial = json.loads(os.environ.get("STEP_TRIAL") or "null")
    with open(os.environ["TUNING_RECORD"], "a") as fh:
        fh.write(json.dumps({"step": step, "trial": trial}) + "\\n")
    if step == "tune":
        result = {f"trial-0{i}": {"name": f"trial-0{i}", "index": i, "rung": 0,
                                  "params": {"training.learning_rate": 0.001 * (i + 1)}}
                  for i in range(3)}
    elif step == "trial" and trial["index"] == 1:
        sys.exit(1)  # this trial's task fails
    else:
        result = {"step": step, "trial": (trial or {}).get("name")}
    with open(os.environ["STEP_XCOM_PATH"], "w") as fh:
        json.dump(result, fh)
    """
)


@pytest.mark.slow
def test_a_tuned_dag_maps_its_trials_and_survives_a_failed_one(
    tmp_path: Path, airflow_home
) -> None:
    dags, venv = tmp_path / "dags", tmp_path / "workload" / "bin"
    dags.mkdir()
    venv.mkdir(parents=True)
    (dags / "tuned_propensity.py").write_text(MODULE)
    (tmp_path / "recorder.py").write_text(RECORDER)
    python = venv / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "recorder.py"} "$@"\n')
    python.chmod(0o755)
    record = tmp_path / "record.jsonl"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home(tmp_path / "airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO / "plugins"),
        "MLOPS_RUNTIME": "local",
        "MLOPS_STEPS_VENV": str(venv.parent),
        "TUNING_RECORD": str(record),
    }
    run = subprocess.run(
        [str(AIRFLOW), "dags", "test", "customer_propensity__acme-foods", "2026-06-30"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    steps = [c["step"] for c in calls]
    assert steps[0] == "tune" and steps[-2:] == ["select", "train"], steps
    trials = sorted(
        (c["trial"]["name"], c["trial"]["index"]) for c in calls if c["step"] == "trial"
    )
    assert trials == [("trial-00", 0), ("trial-01", 1), ("trial-02", 2)]  # one task per trial
    assert all(isinstance(c["trial"], dict) for c in calls if c["step"] == "trial")
    assert "state=success" in log or "DagRunState.SUCCESS" in log, log[-5000:]

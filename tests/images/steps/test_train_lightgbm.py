"""A model in another framework than Keras through the train step's command line, as the local
runtime runs it (one process, no horovodrun): the model's ``fit`` on the platform's training split,
the fitted booster logged in the LightGBM text format with its digest (nothing registered), the
holdout measured through the very directory logged; then the evaluate gate verifies, registers and
promotes it, and the score step scores with it through the same platform interface.

Budget: the session's small feature lake (Spark ingest, shared), then ~10 s per step process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from datasteps_helpers import PIPELINE, TENANT, features_lake
from test_evaluate_score import GATE, SCORES_BUCKET, read_scores, step
from test_train import BIN, DATA_DATE, RUN_ID, env_for, ingest

from embedded.services import create_bucket
from model_steps.contract import run_key

pytest.importorskip("lightgbm")
pytest.importorskip("mlflow")

HERE = Path(__file__).parent
STEP_MODEL = {"ref": "lightgbm_variant", "task": "binary_classification", "source": "test"}
TRAINING = {"epochs": 1, "batch_size": 128, "learning_rate": 0.002, "warmup_epochs": 0,
            "holdout_fraction": 0.2, "seed": 42}  # fmt: skip


# the step processes import the variant model from this folder (env_for drops PYTHONPATH)
ENV = {"STEP_MODEL": json.dumps(STEP_MODEL), "PYTHONPATH": str(HERE)}


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_features_lake, mlflow_services):
    lake = features_lake(small_features_lake, tmp_path_factory.mktemp("lgb"))
    create_bucket(mlflow_services["s3_endpoint"], SCORES_BUCKET)
    os.environ.update(mlflow_services["env"])
    return lake, tmp_path_factory.mktemp("lgb-steps"), mlflow_services


def test_lightgbm_model_trains_registers_and_scores(world) -> None:
    import mlflow

    lake, tmp, services = world
    run_id = f"{RUN_ID}-lgb"
    ingest(lake, run_id)
    xcom = tmp / "train.json"
    proc = subprocess.run([str(BIN / "python"), "-m", "model_steps", "train", "--pipeline",
                           PIPELINE, "--customer", TENANT, "--run-id", run_id, "--data-date",
                           DATA_DATE.isoformat()], env=env_for(lake, xcom, services, TRAINING, **ENV),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    res = json.loads(xcom.read_text())
    assert res["ranks"] == 1 and res["checkpoint_uri"] == "" and res["epochs_run"] == 0
    assert res["metrics"]["roc_auc"] > 0.62, res["metrics"]  # chance is 0.5
    client = mlflow.MlflowClient(services["tracking_uri"])
    run = client.get_run(res["mlflow_run_id"])
    assert run.data.tags["framework"] == "lightgbm" and run.data.params["framework"] == "lightgbm"
    assert run.data.tags["mlops.model_digest"] == res["model_digest"]
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(res["metrics"]["roc_auc"])
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {
        "model/MANIFEST.json",
        "model/io.json",
        "model/model.lgb.txt",
        "model/MLmodel",
    }
    assert not client.search_model_versions(f"run_id='{run.info.run_id}'")  # the gate registers

    rc, decision, log = step("evaluate", lake, tmp, services, run_id, gate=GATE, env=ENV)
    assert rc == 0, log[-4000:]
    assert decision["promote"] and decision["candidate_digest"] == res["model_digest"]
    assert decision["candidate"]["roc_auc"] == pytest.approx(res["metrics"]["roc_auc"])
    rc, scored, log = step("score", lake, tmp, services, run_id, env=ENV)
    assert rc == 0, log[-4000:]
    manifest, rows = read_scores(run_key(run_id))
    assert manifest["model_version"] == decision["candidate_version"] and rows
    assert all(0 < r["score"] < 1 for r in rows) and scored["rows"] == len(rows)

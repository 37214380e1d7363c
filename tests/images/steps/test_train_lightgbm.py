"""A model in another framework than Keras through the step command lines, as the local runtime
runs them (one process, no horovodrun): the model's ``fit`` on the platform's training split, the
fitted booster logged in the LightGBM text format with its digest (nothing registered), the holdout
measured through the very directory logged; then the evaluate gate verifies, registers and
promotes it, and the score step scores with it through the same platform interface. Once as a
binary classifier, once read as a task with several classes (class columns end to end), for
LightGBM, XGBoost and PyTorch (test_train_xgboost and test_train_pytorch hold their binary runs).

Each test is a customer of its own (its own registered model and champion), so the registry state
of the other modules sharing the session's MLflow is left alone.
Budget: the session's small feature lake (Spark ingest, shared), then ~10 s per step process."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import datasteps_helpers
import pytest
import test_evaluate_score as evaluate_score
from datasteps_helpers import PIPELINE, TENANT, features_lake
from test_train import BIN, DATA_DATE, RUN_ID, env_for

from embedded.services import create_bucket
from model_steps.contract import run_key

pytest.importorskip("lightgbm")
pytest.importorskip("mlflow")

HERE = Path(__file__).parent
SCORES_BUCKET = "mlops-scores"
TRAINING = {"epochs": 1, "batch_size": 128, "learning_rate": 0.002, "warmup_epochs": 0,
            "holdout_fraction": 0.2, "seed": 42}  # fmt: skip
BINARY = {"ref": "lightgbm_variant", "task": "binary_classification", "source": "test"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_features_lake, mlflow_services):
    lake = features_lake(small_features_lake, tmp_path_factory.mktemp("lgb"))
    create_bucket(mlflow_services["s3_endpoint"], SCORES_BUCKET)
    with pytest.MonkeyPatch.context() as env:  # this module's tests only: never the worker's
        for key, value in mlflow_services["env"].items():
            env.setenv(key, value)
        yield lake, tmp_path_factory.mktemp("lgb-steps"), mlflow_services


def ingest(lake: Path, customer: str, run_id: str) -> None:
    """The session's committed tables as ``customer``'s, for ``run_id``."""
    for table in ("features", "population"):
        source = lake / table / PIPELINE / f"customer={TENANT}"
        target = lake / table / PIPELINE / f"customer={customer}" / f"run={run_key(run_id)}"
        shutil.copytree(source / f"run={run_key(datasteps_helpers.RUN_ID)}", target)


def step(name: str, world, customer: str, model: dict, config: dict | None = None,  # type: ignore[no-untyped-def]
         trial: dict | None = None):  # fmt: skip
    """Run one step's CLI (a tuning trial's with ``trial``, as its mapped task does): (exit code,
    result, log)."""
    lake, tmp, services = world
    label = f"-{trial['name']}-{trial['rung']}" if trial else ""
    xcom = tmp / f"{name}-{customer}{label}.json"
    env = env_for(lake, xcom, services, TRAINING, STEP_MODEL=json.dumps(model),
                  PYTHONPATH=str(HERE), SCORES_URI=f"s3://{SCORES_BUCKET}",
                  STEP_CONFIG=json.dumps({"training": TRAINING, **(config or {})}),
                  STEP_TRIAL=json.dumps(trial) if trial else "")  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "python"), "-m", "model_steps", name, "--pipeline", PIPELINE, "--customer",
         customer, "--run-id", RUN_ID, "--data-date", DATA_DATE.isoformat()],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    result = json.loads(xcom.read_text()) if xcom.exists() else None
    return proc.returncode, result, proc.stdout[-6000:] + proc.stderr[-4000:]


def read_scores(customer: str) -> list[dict]:
    return evaluate_score.read_scores(run_key(RUN_ID), customer)[1]


def trains_gates_and_scores(world, customer: str, framework: str, model_file: str,  # type: ignore[no-untyped-def]
                            killed: dict | None = None):  # fmt: skip
    """The binary variant of ``framework`` through train, evaluate and score, with what every
    framework must show: one rank, its file in the model directory with the digest the gate
    verifies, a promoted version that scores every row in (0, 1). ``killed``: the train config
    under which a first attempt dies (SIGKILL) and its retry, as Airflow runs it (the same run and
    config), succeeds. Returns (train result, gate decision, the training run)."""
    import mlflow

    binary = {"ref": f"{framework}_variant", "task": "binary_classification", "source": "test"}
    ingest(world[0], customer, RUN_ID)
    if killed:
        rc, res, log = step("train", world, customer, binary, killed)
        assert rc == -signal.SIGKILL and res is None, log
    rc, res, log = step("train", world, customer, binary, killed)
    assert rc == 0, log
    assert res["ranks"] == 1
    assert res["metrics"]["roc_auc"] > 0.62, res["metrics"]  # chance is 0.5
    client = mlflow.MlflowClient(world[2]["tracking_uri"])
    run = client.get_run(res["mlflow_run_id"])
    assert run.data.tags["framework"] == framework
    assert run.data.tags["mlops.model_digest"] == res["model_digest"]
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {"model/MANIFEST.json", "model/io.json", f"model/{model_file}",
                      "model/MLmodel"}  # fmt: skip
    gate = {"metric": "roc_auc", "thresholds": {"roc_auc": 0.6}}
    rc, decision, log = step("evaluate", world, customer, binary, {"gate": gate})
    assert rc == 0, log
    assert decision["promote"] and decision["candidate_digest"] == res["model_digest"]
    rc, scored, log = step("score", world, customer, binary, {"scoring": {"chunk_rows": 1000}})
    assert rc == 0, log
    rows = read_scores(customer)
    assert scored["model_version"] == decision["candidate_version"] and rows
    assert all(0 < r["score"] < 1 for r in rows) and scored["rows"] == len(rows)
    return res, decision, run


def test_lightgbm_model_trains_registers_and_scores(world) -> None:
    import mlflow

    customer = "lgbm-one"
    ingest(world[0], customer, RUN_ID)
    rc, res, log = step("train", world, customer, BINARY)
    assert rc == 0, log
    assert res["ranks"] == 1 and res["checkpoint_uri"] == "" and res["epochs_run"] == 0
    assert res["metrics"]["roc_auc"] > 0.62, res["metrics"]  # chance is 0.5
    client = mlflow.MlflowClient(world[2]["tracking_uri"])
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

    gate = {"metric": "roc_auc", "thresholds": {"roc_auc": 0.6}}
    rc, decision, log = step("evaluate", world, customer, BINARY, {"gate": gate})
    assert rc == 0, log
    assert decision["promote"] and decision["candidate_digest"] == res["model_digest"]
    assert decision["candidate"]["roc_auc"] == pytest.approx(res["metrics"]["roc_auc"])
    rc, scored, log = step("score", world, customer, BINARY, {"scoring": {"chunk_rows": 1000}})
    assert rc == 0, log
    rows = read_scores(customer)
    assert scored["model_version"] == decision["candidate_version"] and rows
    assert all(0 < r["score"] < 1 for r in rows) and scored["rows"] == len(rows)


@pytest.mark.parametrize("framework", ["lightgbm", "xgboost", "pytorch"])
def test_a_model_with_classes_trains_gates_and_scores_class_columns(world, framework) -> None:
    """Each non-Keras framework's variant read as a task with several classes (the variant
    modules' CLASSES_MODEL): class metrics, the gate on log loss, one probability column per
    class."""
    pytest.importorskip({"pytorch": "torch"}.get(framework, framework))
    customer = f"{framework}-classes"
    classes = {"ref": f"{framework}_variant:CLASSES_MODEL", "task": "multiclass_classification",
               "source": "test"}  # fmt: skip
    ingest(world[0], customer, RUN_ID)
    rc, res, log = step("train", world, customer, classes)
    assert rc == 0, log
    assert set(res["metrics"]) >= {"log_loss", "macro_f1", "accuracy"}
    assert res["metrics"]["log_loss"] < 0.69 and res["metrics"]["classes"] == 2
    gate = {"metric": "log_loss", "thresholds": {"macro_f1": 0.3}}
    rc, decision, log = step("evaluate", world, customer, classes, {"gate": gate})
    assert rc == 0, log
    assert decision["promote"] and decision["candidate"]["log_loss"] == res["metrics"]["log_loss"]
    rc, scored, log = step("score", world, customer, classes, {"scoring": {"chunk_rows": 1000}})
    assert rc == 0, log
    rows = read_scores(customer)
    assert set(rows[0]) == {"diner_id", "score_stays", "score_converts", "predicted_class",
                            "model_version"}  # fmt: skip
    assert all(abs(r["score_stays"] + r["score_converts"] - 1) < 1e-9 for r in rows)
    assert {r["predicted_class"] for r in rows} == {"stays", "converts"}
    assert scored["rows"] == len(rows)


TUNING = {"enabled": True, "trials": 3, "parallel_trials": 2, "seed": 7,
          "validation_fraction": 0.25, "halving": {"enabled": True, "rung_fraction": 0.5}}  # fmt: skip


def test_a_lightgbm_model_is_tuned_and_trains_with_the_best_trial(world) -> None:
    """The tuning stage as the DAG runs it, for a single-process framework: each trial is one fit
    of the model's ``fit`` with the trial's settings on the training split's "fit" part, scored on
    its "validation" part (an MLflow child run); halving keeps the better trial, whose next rung
    carries its one fit's result over (no epochs to add); the final train fits with its settings."""
    import mlflow

    customer, config = "lgbm-tuned", {"tuning": TUNING, "training": {**TRAINING, "epochs": 2}}
    ingest(world[0], customer, RUN_ID)
    rc, plan, log = step("tune", world, customer, BINARY, config)
    assert rc == 0, log
    trials = list(plan.values())
    configured = {"model.learning_rate": 0.05, "model.num_leaves": 15}
    assert trials[0]["params"] == configured  # trial 0 is the configured settings
    assert all(4 <= t["params"]["model.num_leaves"] <= 31 for t in trials)
    rung0 = [step("trial", world, customer, BINARY, config, trial=t) for t in trials]
    assert all(rc == 0 and r["status"] == "ok" for rc, r, _ in rung0), [x[2] for x in rung0]
    assert all(r["objective_metric"] == "roc_auc" and r["objective"] > 0.6 for _, r, _ in rung0)
    rc, kept, log = step("halve", world, customer, BINARY, config)
    assert rc == 0 and len(kept) == 1, log
    (survivor,) = kept.values()
    rc, rung1, log = step("trial", world, customer, BINARY, config, trial=survivor)
    first = next(r for _, r, _ in rung0 if r["name"] == survivor["name"])
    assert rc == 0 and rung1["rung"] == 1, log
    assert (rung1["objective"], rung1["mlflow_run_id"]) == (
        first["objective"],
        first["mlflow_run_id"],
    )
    assert first["objective"] == max(r["objective"] for _, r, _ in rung0)
    rc, selected, log = step("select", world, customer, BINARY, config)
    assert rc == 0 and selected["trial"] == survivor["name"], log

    rc, res, log = step("train", world, customer, BINARY, config)
    assert rc == 0, log
    assert res["tuning"] == {"trial": survivor["name"], "params": survivor["params"]}
    client = mlflow.MlflowClient(world[2]["tracking_uri"])
    params = client.get_run(res["mlflow_run_id"]).data.params
    assert float(params["model.learning_rate"]) == survivor["params"]["model.learning_rate"]
    assert int(params["model.num_leaves"]) == survivor["params"]["model.num_leaves"]
    child = client.get_run(first["mlflow_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == selected["parent_run_id"]
    assert child.data.tags["framework"] == "lightgbm" and "validation_roc_auc" in child.data.metrics
    assert not client.list_artifacts(child.info.run_id, "model")  # a trial logs no model

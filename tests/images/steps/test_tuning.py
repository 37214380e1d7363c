"""The tuning stage end to end through the step CLI, as the mapped tasks run it, against the
embedded MLflow server: tune plans 4 trials (successive halving at half the epochs), one trial's
task fails, halve keeps the better half (the pruned child run is KILLED), the kept trials resume
from their checkpoints to all epochs, select picks the best, and the final train trains with the
best trial's parameters (asserted in MLflow: its params, its model version's trial tag, the parent
run with the search space and the best parameters).

Budget: 6 TensorFlow processes of a few seconds' training each (~2-3 min on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from datasteps_helpers import DATA_DATE, PIPELINE, RUN_ID, TENANT, features_lake, model_env

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")
mlflow = pytest.importorskip("mlflow")

BIN = Path(sys.executable).parent
CONFIG = {
    "training": {"epochs": 4, "batch_size": 128, "learning_rate": 0.003, "warmup_epochs": 0},
    "model": {"hidden_units": [32], "dropout": 0.1},
    "tuning": {"enabled": True, "trials": 4, "parallel_trials": 2, "seed": 7,
               "validation_fraction": 0.25, "halving": {"enabled": True, "rung_fraction": 0.5}},
}  # fmt: skip


@pytest.fixture(scope="module")
def tune_lake(tmp_path_factory, small_features_lake) -> Path:
    """A copy of the session's ingested small lake (conftest.small_features_lake)."""
    return features_lake(small_features_lake, tmp_path_factory.mktemp("tune"))


def step(lake: Path, services: dict, tmp: Path, name: str, run_id: str = RUN_ID,
         trial: dict | None = None) -> tuple[int, dict | None, str]:  # fmt: skip
    label = f"{name}-{trial['name']}-{trial['rung']}" if trial else name
    xcom = tmp / f"{label}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.pop("PYTHONPATH", None)
    env.update(services["env"])
    env.update({"LAKE_URI": f"file://{lake}", "STEP_CONFIG": json.dumps(CONFIG), **model_env(),
                "STEP_XCOM_PATH": str(xcom), "PATH": f"{BIN}:{env.get('PATH', '')}",
                "STEP_TRIAL": json.dumps(trial) if trial else ""})  # fmt: skip
    argv = [str(BIN / "python"), "-m", "model_steps", name, "--pipeline", PIPELINE,
            "--customer", TENANT, "--run-id", run_id, "--data-date", DATA_DATE.isoformat()]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(xcom.read_text()) if xcom.exists() else None
    return proc.returncode, result, proc.stdout[-4000:] + proc.stderr[-3000:]


def ok(outcome: tuple[int, dict | None, str]) -> dict:
    rc, result, log = outcome
    assert rc == 0 and result is not None, log
    return result


@pytest.fixture(scope="module")
def search(tune_lake, mlflow_services, tmp_path_factory) -> dict:
    """The whole stage, as the DAG runs it: 2 trials at a time, trial-02's task failing."""
    tmp, lake, svc = tmp_path_factory.mktemp("steps"), tune_lake, mlflow_services
    out: dict = {"plan": ok(step(lake, svc, tmp, "tune"))}
    out["retried_plan"] = ok(step(lake, svc, tmp, "tune"))
    out["other_run_plan"] = ok(step(lake, svc, tmp, "tune", run_id=f"{RUN_ID}-other"))
    trials = list(out["plan"].values())
    broken = {**trials[2], "params": {**trials[2]["params"], "model.dropout": 7.0}}  # rc 2
    with ThreadPoolExecutor(2) as pool:  # parallel_trials = 2
        rung0 = list(pool.map(lambda t: step(lake, svc, tmp, "trial", trial=t),
                              [trials[0], trials[1], broken, trials[3]]))  # fmt: skip
    out["rung0"], out["halve"] = rung0, ok(step(lake, svc, tmp, "halve"))
    with ThreadPoolExecutor(2) as pool:
        out["rung1"] = [ok(r) for r in pool.map(
            lambda t: step(lake, svc, tmp, "trial", trial=t), out["halve"].values())]  # fmt: skip
    out["select"] = ok(step(lake, svc, tmp, "select"))
    out["train"] = ok(step(lake, svc, tmp, "train"))
    return out


def test_a_retry_and_another_run_plan_the_same_trials(search) -> None:
    plan = search["plan"]
    assert list(plan) == ["trial-00", "trial-01", "trial-02", "trial-03"]
    assert search["retried_plan"] == plan
    assert (
        search["other_run_plan"] == plan
    )  # seeded by tuning.seed, pipeline and customer, not the run id
    baseline = {"training.batch_size": 128, "training.learning_rate": 0.003,
                "model.dropout": 0.1, "model.hidden_units": [32]}  # fmt: skip
    assert plan["trial-00"]["params"] == baseline  # trial 0: the settings as configured


def test_a_failing_trial_does_not_fail_the_stage(search) -> None:
    rcs = [rc for rc, _, _ in search["rung0"]]
    assert rcs[2] == 2 and rcs[0] == rcs[1] == rcs[3] == 0
    assert search["select"]["finished"] == 2
    assert search["select"]["trials"]["trial-02"]["status"] == "failed"


def test_successive_halving_stops_the_worse_half(search, mlflow_services) -> None:
    rung0 = {r["name"]: r for _, r, _ in search["rung0"] if r}
    assert all(r["epochs"] == 2 and r["rung"] == 0 for r in rung0.values())
    ranked = sorted(rung0, key=lambda n: -rung0[n]["objective"])  # roc_auc: higher is better
    assert list(search["halve"]) == sorted(ranked[:2])  # 4 planned -> 2 kept
    for r in search["rung1"]:  # the kept ones resumed from their rung-0 checkpoint
        assert (r["start_epoch"], r["epochs"], r["rung"]) == (2, 4, 1)
    client = mlflow.MlflowClient(mlflow_services["tracking_uri"])
    pruned = client.get_run(rung0[ranked[2]]["mlflow_run_id"])
    assert pruned.info.status == "KILLED" and pruned.data.tags["tuning.status"] == "pruned"
    kept = client.get_run(search["rung1"][0]["mlflow_run_id"])
    assert kept.info.status == "FINISHED"
    history = client.get_metric_history(kept.info.run_id, "objective")
    assert sorted(m.step for m in history) == [2, 4]  # one objective per rung


def test_the_best_trial_reaches_the_final_training(search, mlflow_services) -> None:
    client = mlflow.MlflowClient(mlflow_services["tracking_uri"])
    best = max(search["rung1"], key=lambda r: r["objective"])
    selected, train = search["select"], search["train"]
    assert selected["trial"] == best["name"] and selected["params"] == best["params"]
    run = client.get_run(train["mlflow_run_id"])
    params = best["params"]
    assert run.data.params["learning_rate"] == str(params["training.learning_rate"])
    assert run.data.params["batch_size"] == str(params["training.batch_size"])
    assert run.data.params["model.hidden_units"] == ",".join(map(str, params["model.hidden_units"]))
    assert run.data.tags["tuning.trial"] == best["name"]
    assert train["epochs_run"] == 4 and train["tuning"]["trial"] == best["name"]
    assert run.data.tags["tuning.parent_run_id"] == selected["parent_run_id"]  # the gate copies
    # these onto the version it registers (test_evaluate_score checks the version's lineage)
    parent = client.get_run(selected["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tuning.best_trial"] == best["name"]
    assert (
        json.loads(parent.data.params["best.training.learning_rate"])
        == params["training.learning_rate"]
    )
    assert json.loads(parent.data.params["space.training.learning_rate"]) == {
        "log_uniform": [0.001, 0.01]
    }
    child = client.get_run(best["mlflow_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.metrics["objective"] == pytest.approx(best["objective"])
    assert "holdout_roc_auc" not in child.data.metrics  # trials never see the gate's holdout

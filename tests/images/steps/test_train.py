"""The train step end to end on small generated data, through the contract's command line exactly as
the local runtime runs it (``horovodrun -np 2 -H localhost:2 --gloo python -m model_steps train …``
with horovodrun as ``python -m model_steps.horovod_launch``, or plain ``python -m model_steps train
…`` for one rank), against a real MLflow server (the embedded services: sqlite backend, artifacts on
the local S3 endpoint).

Budget: TF import is ~8 s per process and each run trains a few seconds, so the module takes ~3-4
minutes on 2 cores; the data is datagen's "small" size (4,000 diners) ingested once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasteps_helpers
import pytest
from datasteps_helpers import DATA_DATE, PIPELINE, TENANT, features_lake, model_env

from mlplatform_contract.steps import HOROVOD_LAUNCHER
from model_steps.contract import run_key

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")
pytest.importorskip("mlflow")

BIN = Path(sys.executable).parent
RUN_ID = "manual__2026-06-16T00:00:00+00:00"
TRAINING = {
    "epochs": 12,
    "batch_size": 128,
    "learning_rate": 0.002,
    "warmup_epochs": 2,
    "holdout_fraction": 0.2,
    "seed": 42,
}
NETWORK = {"hidden_units": [64, 32], "dropout": 0.1}  # the model's own settings section
REGISTERED = f"{PIPELINE}-{TENANT}"


@pytest.fixture(scope="module")
def train_lake(tmp_path_factory, small_features_lake) -> Path:
    """Raw zone of 4,000 diners and the ingest step's committed feature table for RUN_ID: a copy of
    the session's (conftest.small_features_lake: one Spark ingest for every training test)."""
    return features_lake(small_features_lake, tmp_path_factory.mktemp("train"))


def ingest(lake: Path, run_id: str) -> None:
    """The same committed tables (training table and population) under another Airflow run id (a
    copy of RUN_ID's: one Spark ingest is enough for every training test)."""
    for table in ("features", "population"):
        base = lake / table / PIPELINE / f"customer={TENANT}"
        target = base / f"run={run_key(run_id)}"
        if not target.exists():
            shutil.copytree(base / f"run={run_key(datasteps_helpers.RUN_ID)}", target)


def command(ranks: int, run_id: str) -> list[str]:
    step = [
        "-m",
        "model_steps",
        "train",
        "--pipeline",
        PIPELINE,
        "--customer",
        TENANT,
        "--run-id",
        run_id,
        "--data-date",
        DATA_DATE.isoformat(),
    ]
    if ranks == 1:
        return [str(BIN / "python"), *step]
    return [
        str(BIN / "python"),
        "-m",
        HOROVOD_LAUNCHER,
        "-np",
        str(ranks),
        "-H",
        f"localhost:{ranks}",
        "--gloo",
        str(BIN / "python"),
        *step,
    ]


def env_for(
    lake: Path, xcom: Path, services: dict, training: dict | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(services["env"])
    env.update(
        {
            "LAKE_URI": f"file://{lake}",
            "STEP_CONFIG": json.dumps({"training": training or TRAINING, "model": NETWORK}),
            **model_env(),
            "STEP_XCOM_PATH": str(xcom),
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "AIRFLOW_CTX_DAG_ID": f"{PIPELINE}__{TENANT}",
            "AIRFLOW_CTX_DAG_RUN_ID": "test-run",
            "MLOPS_GIT_SHA": "0123456789abcdef0123456789abcdef01234567",
            "MLOPS_IMAGE_DIGEST": "sha256:" + "b" * 64,
        }
    )
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def train(
    lake: Path, tmp: Path, services: dict, *, ranks: int, run_id: str, training: dict | None = None
) -> dict:
    xcom = tmp / f"train-{ranks}-{run_key(run_id)}.json"
    proc = subprocess.run(
        command(ranks, run_id),
        env=env_for(lake, xcom, services, training),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    return json.loads(xcom.read_text())


@pytest.fixture(scope="module")
def runs(train_lake, mlflow_services, tmp_path_factory) -> dict[int, dict]:
    """One training run at 1 rank and one at 2 ranks, each for its own Airflow run id."""
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    for ranks in (1, 2):
        run_id = f"{RUN_ID}-np{ranks}"
        ingest(train_lake, run_id)
        out[ranks] = train(train_lake, tmp, mlflow_services, ranks=ranks, run_id=run_id)
    return out


def test_one_and_two_ranks_learn_and_agree(runs):
    one, two = runs[1], runs[2]
    assert (one["ranks"], two["ranks"]) == (1, 2)
    assert one["global_batch_size"] == 128 and two["global_batch_size"] == 256
    assert one["epochs_run"] == two["epochs_run"] == TRAINING["epochs"]
    assert one["rows_train"] == two["rows_train"]  # same split, whatever the world size
    auc1, auc2 = one["metrics"]["roc_auc"], two["metrics"]["roc_auc"]
    assert auc1 > 0.62 and auc2 > 0.62, (auc1, auc2)  # chance is 0.5
    assert abs(auc1 - auc2) < 0.06, (auc1, auc2)
    assert one["metrics"]["rows"] == two["metrics"]["rows"] > 500


def test_mlflow_run_contents(runs, mlflow_services):
    import mlflow

    mlflow.set_tracking_uri(mlflow_services["tracking_uri"])
    client = mlflow.MlflowClient(mlflow_services["tracking_uri"])
    res = runs[2]
    run = client.get_run(res["mlflow_run_id"])
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == f"{PIPELINE}/{TENANT}"  # one experiment per model and customer
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["epochs"] == "12" and p["batch_size"] == "128" and p["horovod_size"] == "2"
    assert float(p["scaled_learning_rate"]) == pytest.approx(0.004)
    assert p["model.hidden_units"] == "64,32" and p["model"] == PIPELINE
    assert p["task"] == "binary_classification"
    t = run.data.tags
    assert t["customer"] == TENANT and t["pipeline"] == PIPELINE
    assert t["airflow.dag_id"] == f"{PIPELINE}__{TENANT}" and t["airflow.run_id"] == "test-run"
    assert (
        t["git_sha"] == t["mlflow.source.git.commit"] == "0123456789abcdef0123456789abcdef01234567"
    )
    assert t["image_digest"] == "sha256:" + "b" * 64
    assert t["run_key"] == run_key(f"{RUN_ID}-np2")
    # per-epoch metrics, one point per epoch
    for key in ("loss", "auc", "val_loss", "val_auc", "epoch_seconds", "samples_per_second"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, 13)), key
    # the warm-up raised the learning rate from lr to lr*size over 2 epochs
    lrs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")}
    assert lrs[1] < lrs[2] <= lrs[12] == pytest.approx(0.004)
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(res["metrics"]["roc_auc"])
    # training data as inputs with digests
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    for ds in inputs.values():
        assert ds.digest and f"/features/{PIPELINE}/customer={TENANT}/run=" in ds.source
    # the same table content has the same digest (MLflow keeps one dataset record for it)
    other = client.get_run(runs[1]["mlflow_run_id"]).inputs.dataset_inputs
    assert {i.dataset.digest for i in other} == {d.digest for d in inputs.values()}
    assert json.loads(inputs["training"].profile)["num_rows"] == res["rows_train"]
    # the drift reference, as an artifact and in the lake
    profile = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/feature_profile.json")
    assert profile["rows"] > res["rows_train"] and "recency_days" in profile["numeric"]
    lake_profile = json.loads(Path(res["profile_uri"][len("file://") :]).read_text())
    assert lake_profile == profile
    # the model directory (model_store) and its digest in the run; train registers nothing: the
    # evaluate gate registers what it verified (only the gate writes the registry)
    assert t["mlops.model_digest"] == res["model_digest"] and len(res["model_digest"]) == 64
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {"model/MANIFEST.json", "model/io.json", "model/model.keras", "model/MLmodel"}
    assert res["model_version"] is None and res["run_model_uri"] == f"runs:/{run.info.run_id}/model"
    assert not client.search_model_versions(f"run_id='{run.info.run_id}'")


def test_registered_model_predicts_from_feature_columns(runs, mlflow_services, train_lake):
    import mlflow

    from model_steps import model_store
    from model_steps.profile import read_table

    mlflow.set_tracking_uri(mlflow_services["tracking_uri"])
    # the model directory is data: verified against the digest train recorded, loaded by the image
    model = model_store.load_run(runs[1]["mlflow_run_id"], runs[1]["model_digest"], "candidate")
    sig = mlflow.models.get_model_info(runs[1]["run_model_uri"]).signature.inputs  # MLmodel: schema
    assert "segment" in sig.input_names() and "recency_days" in sig.input_names()
    df = read_table(runs[1]["features_uri"]).head(50)
    out = model.predict(df.drop(columns=["label"]))
    assert list(out.columns) == ["score"] and len(out) == 50  # the task's output column
    assert ((out["score"] > 0) & (out["score"] < 1)).all()


def test_retry_after_success_returns_the_same_version(runs, train_lake, mlflow_services, tmp_path):
    again = train(train_lake, tmp_path, mlflow_services, ranks=1, run_id=f"{RUN_ID}-np1")
    assert again["model_digest"] == runs[1]["model_digest"]
    assert again["mlflow_run_id"] == runs[1]["mlflow_run_id"]


def test_killed_run_resumes_from_its_last_checkpoint(train_lake, mlflow_services, tmp_path):
    """Spot safety: kill the whole 2-rank run (its process group, SIGKILL) once the first epoch's
    checkpoint is committed, retry the same command, and check it continued, not restarted."""
    run_id = f"{RUN_ID}-kill"
    ingest(train_lake, run_id)
    training = {**TRAINING, "epochs": 20, "batch_size": 64}
    run_dir = train_lake / "models" / PIPELINE / f"customer={TENANT}" / f"run={run_key(run_id)}"
    latest = run_dir / "checkpoints" / "_LATEST.json"
    xcom = tmp_path / "kill.json"
    proc = subprocess.Popen(
        command(2, run_id),
        env=env_for(train_lake, xcom, mlflow_services, training),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not latest.exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = json.loads(latest.read_text())["epoch"]
    assert 1 <= killed_at < 20
    assert not xcom.exists()
    first_run = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]

    res = train(train_lake, tmp_path, mlflow_services, ranks=2, run_id=run_id, training=training)
    assert res["resumed"] is True
    assert res["start_epoch"] >= killed_at
    assert res["epochs_run"] == 20 - res["start_epoch"]
    assert res["mlflow_run_id"] == first_run  # the retry continued the same MLflow run
    assert res["metrics"]["roc_auc"] > 0.6
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "_LATEST.json",
        "epoch=0020",
    ]
    import mlflow

    client = mlflow.MlflowClient(mlflow_services["tracking_uri"])
    steps = {m.step for m in client.get_metric_history(first_run, "loss")}
    assert steps == set(range(1, 21))  # epochs before the kill and after the resume, one run
    resumed = client.get_metric_history(first_run, "resumed_at_epoch")
    assert [m.value for m in resumed] == [res["start_epoch"]]


def test_dead_tracking_server_fails_fast_with_the_uri(train_lake, tmp_path):
    """A closed port: the step retries with backoff for MLOPS_MLFLOW_WAIT_S, then exits 1 naming
    the URI, before importing TensorFlow or reading data."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    xcom = tmp_path / "dead.json"
    env = env_for(train_lake, xcom, {"env": {"MLFLOW_TRACKING_URI": uri}}, MLOPS_MLFLOW_WAIT_S="6")
    started = time.monotonic()
    proc = subprocess.run(
        command(1, f"{RUN_ID}-dead"), env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert f"MLflow tracking server {uri} is not reachable" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert elapsed < 30
    assert not xcom.exists()

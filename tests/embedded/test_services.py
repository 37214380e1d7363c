"""The embedded services launcher: up answers, status sees it, down stops every process group and
frees the ports; failures are bounded and say why. Runs with the workload venv (moto_server and
mlflow live there)."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from embedded import services

pytestmark = pytest.mark.slow  # starts step processes / servers (not in make test-fast)

pytest.importorskip("moto")
pytest.importorskip("mlflow")


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_status_down(tmp_path: Path):
    state = tmp_path / "svc"
    info = services.up(state, timeout=120)
    try:
        assert info["tracking_uri"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(info["tracking_uri"] + "/health", timeout=5) as r:
            assert r.status == 200
        # the artifact bucket exists on the S3 endpoint
        with urllib.request.urlopen(info["s3_endpoint"] + "/mlflow-artifacts", timeout=5) as r:
            assert r.status == 200
        env = (state / "services.env").read_text()
        assert f"export MLFLOW_TRACKING_URI={info['tracking_uri']}" in env
        assert json.loads((state / "services.json").read_text())["pids"] == info["pids"]
        assert services.main(["status", "--state", str(state)]) == 0
    finally:
        stopped = services.down(state)
    assert stopped == ["mlflow", "s3"]
    assert not any(_alive(pid) for pid in info["pids"].values())
    assert not _port_open(info["tracking_uri"]) and not _port_open(info["s3_endpoint"])
    assert not (state / "services.json").exists()
    assert services.main(["status", "--state", str(state)]) == 1
    assert services.down(state) == []  # idempotent


def test_a_service_that_dies_at_start_is_reported_with_its_log(tmp_path: Path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "moto_server").write_text(
        "#!/bin/sh\necho 'cannot bind: simulated failure' >&2\nexit 3\n"
    )
    (fake / "moto_server").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    with pytest.raises(
        services.ServiceError, match=r"(?s)moto_server exited with code 3.*simulated failure"
    ):
        services.up(tmp_path / "svc", timeout=20)
    assert not (tmp_path / "svc" / "services.json").exists()


def test_the_port_is_the_one_the_service_reports_after_binding_port_0(tmp_path: Path):
    import subprocess

    log = tmp_path / "moto.log"
    line = "print(' * Running on http://127.0.0.1:40123', flush=True); import time; time.sleep(30)"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", line], stdout=fh)
    try:
        assert services.bound_port("moto_server", proc, log, timeout=30) == 40123
    finally:
        proc.kill()
    with open(log, "wb") as fh:
        dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdout=fh)
    with pytest.raises(services.ServiceError, match="exited with code 3 before it bound a port"):
        services.bound_port("mlflow server", dead, log, timeout=30)


FRESH_READER = """
import json, pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
mlmodel = sorted(root.glob("mlflow-artifacts/**/MLmodel"))
scores = root / "mlops-scores" / "demo" / "customer=acme-foods" / "part-0.csv"
print(json.dumps({"flavors": sorted(yaml.safe_load(mlmodel[0].read_text())["flavors"]),
                  "scores": scores.read_text()}))
"""


def test_models_and_scores_outlive_the_services_on_disk(tmp_path: Path) -> None:
    """After `down`, a registered model's MLmodel file and a scores object are plain files under
    <state>/s3 that a fresh process reads; the next `up` serves them again, registry included."""
    import subprocess

    import mlflow

    state = tmp_path / "svc"
    info = services.up(state, timeout=120, buckets=("mlops-scores",))
    key = "mlops-scores/demo/customer=acme-foods/part-0.csv"
    try:
        bucket, name = key.split("/", 1)
        services._client(info["s3_endpoint"]).put_object(
            Bucket=bucket, Key=name, Body=b"diner_id,score\nd1,0.9\n"
        )
        os.environ.update(services.DUMMY_AWS)
        os.environ.update(services.admin_env(state))  # the registry's auth app is on
        mlflow.set_tracking_uri(info["tracking_uri"])
        # this server's own experiment: an earlier test in this process may have left mlflow's
        # active experiment pointing at an id only another server had
        mlflow.set_experiment("outlive-demo")

        class Constant(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return [0.5] * len(model_input)

        with mlflow.start_run():
            logged = mlflow.pyfunc.log_model(
                name="model", python_model=Constant(), registered_model_name="demo"
            )
    finally:
        services.down(state)
    out = subprocess.run(
        [sys.executable, "-c", FRESH_READER, str(state / services.S3_DIR)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    read = json.loads(out.stdout)
    assert "python_function" in read["flavors"]
    assert read["scores"] == "diner_id,score\nd1,0.9\n"

    again = services.up(state, timeout=120)
    try:
        assert again["s3_objects_loaded"] >= 2
        body = services._client(again["s3_endpoint"]).get_object(Bucket=bucket, Key=name)["Body"]
        assert body.read() == b"diner_id,score\nd1,0.9\n"
        mlflow.set_tracking_uri(again["tracking_uri"])
        version = mlflow.MlflowClient().get_latest_versions("demo")[0]
        local = mlflow.artifacts.download_artifacts(
            f"models:/demo/{version.version}", dst_path=str(tmp_path / "dl")
        )
        assert (Path(local) / "MLmodel").exists()
        assert str(logged.registered_model_version) == version.version
    finally:
        services.down(state)

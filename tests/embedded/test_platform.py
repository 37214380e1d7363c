"""The embedded platform (embedded/platform.py) that make run, make airflow and the tests share:
the settings it hands to every step, reuse of running services, example data generated once, and
teardown of only what it started. Runs with the workload venv (moto_server, mlflow, datagen)."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from embedded import platform, pushgateway, services

pytestmark = pytest.mark.slow  # starts step processes / servers (not in make test-fast)

pytest.importorskip("moto")
pytest.importorskip("mlflow")


def _port_open(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname, parts.port)) == 0


def test_platform_env_data_and_teardown(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    with platform.embedded_platform(root, ["acme-foods"], size="tiny") as up:
        env = up.env
        assert env["LAKE_URI"] == (root / "lake").resolve().as_uri()
        assert env["MLFLOW_TRACKING_URI"] == up.services["tracking_uri"]
        assert env["SCORES_URI"] == "s3://mlops-scores"
        assert env["MLOPS_RUNTIME"] == "local"
        crm = urllib.parse.urlsplit(env["AIRFLOW_CONN_CRM_DEFAULT"])
        assert (
            crm.password == platform.CRM_TOKEN and f"http://{crm.hostname}:{crm.port}" == up.crm_url
        )
        assert up.generated == ["acme-foods"] and not up.reused_services
        info = json.loads(
            (root / "lake" / "raw" / "customer=acme-foods" / "_datagen.json").read_text()
        )
        assert info["data_date"] == platform.DATA_DATE
        assert env["MLOPS_NOTIFY_FILE"] == str(up.notify_file)
        urls = [up.services["tracking_uri"], up.services["s3_endpoint"], up.crm_url]
        if pushgateway.binary() is not None:  # make monitoring-tools
            assert env["MLOPS_PUSHGATEWAY_URL"] == up.pushgateway_url
            assert pushgateway.groups(up.pushgateway_url) == []
            urls.append(up.pushgateway_url)
        else:
            assert "MLOPS_PUSHGATEWAY_URL" not in env, "no gateway: the steps push nothing"
        assert all(_port_open(u) for u in urls)
    assert [u for u in urls if _port_open(u)] == []  # everything it started is stopped


def test_running_services_are_reused_and_left_running(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    started = services.up(root / "services", timeout=120)
    try:
        (root / "lake" / "raw" / "customer=acme-foods").mkdir(parents=True)
        (root / "lake" / "raw" / "customer=acme-foods" / "_datagen.json").write_text("{}")
        seen: list[str] = []
        with platform.embedded_platform(root, ["acme-foods"], log=seen.append) as up:
            assert up.reused_services and up.services["tracking_uri"] == started["tracking_uri"]
            assert up.generated == []  # its raw zone is already there: nothing regenerated
            # the scores bucket is created on the reused endpoint too
            with urllib.request.urlopen(f"{started['s3_endpoint']}/mlops-scores", timeout=10):
                pass
        assert any("reusing" in line for line in seen)
        assert _port_open(started["tracking_uri"])  # not ours to stop
    finally:
        services.down(root / "services")

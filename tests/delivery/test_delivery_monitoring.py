"""Metrics and alerts in helm/platform: the PrometheusRule's rules pass `promtool check rules` and
the promtool unit tests in tests/delivery/monitoring/ (the alerts really fire, and only where they
should), the Grafana dashboard parses and, like the rules, reads only metrics something defines
(model_steps.metrics.METRICS for the steps', the official chart's statsd mappings for Airflow's),
and the steps can reach the Pushgateway. Airflow's own statsd exporter is checked in
test_delivery_airflow_chart.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from delivery_helpers import REPO, STEPS_NAMESPACE, output_of, parse_charts, render_charts, run
from delivery_helpers import vendored as vendored_file

from model_steps.metrics import ENV_PUSHGATEWAY_URL, METRICS

PROMTOOL = REPO / ".tools" / "prometheus" / "usr" / "bin" / "promtool"
UNIT_TESTS = Path(__file__).parent / "monitoring" / "alerts_test.yaml"
STATSD_MAPPINGS = "apache-airflow-chart-1.21.0/files/statsd-mappings.yml"
# what Prometheus derives from one statsd-exporter metric (timers are summaries)
DERIVED = re.compile(r"_(count|sum|bucket)$")


def promtool() -> str:
    """promtool from `make monitoring-tools`, else PATH; missing fails (a green run ran it)."""
    found = str(PROMTOOL) if PROMTOOL.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool missing at {PROMTOOL} and on PATH: run `make monitoring-tools`")
    return found


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> list[dict]:
    return parse_charts(render_charts(tmp_path_factory.mktemp("helm-monitoring")))["platform"]


def one(objects: list[dict], kind: str, name: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def rules_file(platform, tmp_path_factory) -> Path:
    """The PrometheusRule's spec (a Prometheus rule file: {groups: ...}) as promtool reads it."""
    rule = one(platform, "PrometheusRule", "mlops-platform")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack", "the ruleSelector"
    path = tmp_path_factory.mktemp("rules") / "mlops-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


@pytest.fixture(scope="module")
def dashboard(platform) -> dict:
    cm = one(platform, "ConfigMap", "mlops-platform-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", "the Grafana sidecar's label"
    return json.loads(cm["data"]["mlops-platform.json"])


def exprs_of(rules_file: Path, dashboard: dict) -> list[str]:
    rules = yaml.safe_load(rules_file.read_text())
    found = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return (
        found
        + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        + [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    )


def test_promtool_check_rules(rules_file):
    proc = run([promtool(), "check", "rules", str(rules_file)])
    assert proc.returncode == 0, output_of(proc)
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_prove_the_alerts_fire(rules_file, tmp_path):
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rules_file)]
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = run([promtool(), "test", "rules", str(path)])
    assert proc.returncode == 0, output_of(proc)
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert {"MlopsRealizedMetricOutOfBounds", "MlopsDriftWarning", "MlopsDriftHigh",
            "MlopsPublishFailed", "MlopsPipelineNotSucceeded"} <= tested  # fmt: skip


def test_rules_and_dashboard_read_only_metrics_the_steps_define(rules_file, dashboard):
    used = {m for e in exprs_of(rules_file, dashboard) for m in re.findall(r"\bmlops_\w+", e)}
    assert used, "no step metric used at all"
    assert used <= set(METRICS), (
        f"not in model_steps.metrics.METRICS: {sorted(used - set(METRICS))}"
    )


def test_rules_and_dashboard_read_only_airflow_metrics_the_statsd_exporter_maps(
    rules_file, dashboard
):
    mappings = yaml.safe_load(vendored_file(STATSD_MAPPINGS).read_text())["mappings"]
    mapped = {m["name"] for m in mappings}
    exprs = exprs_of(rules_file, dashboard)
    used = {DERIVED.sub("", m) for e in exprs for m in re.findall(r"\bairflow_\w+", e)}
    assert used and used <= mapped, f"not mapped by the chart's statsd exporter: {used - mapped}"


def test_dashboard_panels_query_prometheus_through_the_datasource_variable(dashboard):
    assert dashboard["uid"] == "mlops-platform" and len(dashboard["panels"]) >= 10
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "pipeline", "customer"} <= names
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_steps_get_the_pushgateway_and_may_reach_it(platform):
    env = one(platform, "ConfigMap", "step-env")
    assert env["metadata"]["namespace"] == STEPS_NAMESPACE
    assert env["data"][ENV_PUSHGATEWAY_URL].startswith("http://")
    egress = one(platform, "NetworkPolicy", "steps-egress")["spec"]["egress"]
    to_gateway = [
        rule
        for rule in egress
        for peer in rule["to"]
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "prometheus-pushgateway"
    ]
    assert [r["ports"] for r in to_gateway] == [[{"protocol": "TCP", "port": 9091}]]


def test_airflow_statsd_exporter_is_scraped(platform):
    monitor = one(platform, "ServiceMonitor", "airflow-statsd")
    assert monitor["metadata"]["namespace"] == "airflow"
    assert monitor["spec"]["selector"]["matchLabels"] == {"component": "statsd"}
    assert monitor["spec"]["endpoints"][0]["port"] == "statsd-scrape"

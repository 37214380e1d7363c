"""The steps' Prometheus metrics: the one mapping from result dicts, and pushes to a real
Pushgateway (Debian's binary from `make monitoring-tools`) through the step CLI."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from embedded import pushgateway as gw
from mlplatform_contract.results import EXAMPLES
from model_steps import cli, metrics
from model_steps.contract import SkipDownstream, StepError

# results shaped like the steps' own (trimmed from a `make run` log)
TRAIN = {"metrics": {"roc_auc": 0.747649, "pr_auc": 0.206262, "rows": 3873}, "model_version": "3",
         "epoch_seconds": [7.2, 0.5], "model_uri": "models:/x/3", "ranks": 2, "resumed": False}  # fmt: skip
VALIDATE = {"drift": {"fail_at": 0.25, "max_psi": 0.31, "reference": "champion", "warn_at": 0.1,
                      "top": {"recency_days": 0.31, "orders_90d": 0.12}},
            "expectations": {"evaluated": 134, "failed_critical": 0}, "rows": 19762,
            "tables": {"features": {"rows": 19762, "drift": {"max_psi": 0.31}}}}  # fmt: skip
EVALUATE = {"candidate": {"roc_auc": 0.61}, "champion": {"roc_auc": 0.70}, "passed": False,
            "candidate_version": "4", "scoring_version": "3", "reasons": ["roc_auc 0.61 < 0.65"]}  # fmt: skip
PUBLISH = {
    "sent_records": 4000,
    "skipped_records": 0,
    "retries_by_reason": {"429": 2},
    "seconds": 2.4,
}
MONITOR = {"realized": {"roc_auc": 0.58, "pr_auc": 0.1}, "uplift": {"conversion": 0.012},
           "model_version": "3", "degraded": True}  # fmt: skip


def by_name(result: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {(m, labels.get("name", "")): v for m, labels, v in metrics.samples(result)}


def test_named_sections_become_families_labelled_by_name() -> None:
    train, validate, monitor = by_name(TRAIN), by_name(VALIDATE), by_name(MONITOR)
    assert train[("mlops_holdout_metric", "roc_auc")] == pytest.approx(0.747649)
    assert validate[("mlops_drift", "max_psi")] == 0.31
    assert validate[("mlops_drift", "warn_at")] == 0.1
    assert validate[("mlops_drift", "top.recency_days")] == 0.31
    assert "reference" not in {n for _, n in validate}, "strings are not figures"
    assert monitor[("mlops_realized_metric", "roc_auc")] == 0.58
    assert monitor[("mlops_uplift", "conversion")] == 0.012
    assert monitor[("mlops_step_value", "degraded")] == 1.0


def test_top_level_figures_named_and_generic() -> None:
    validate, evaluate, publish = by_name(VALIDATE), by_name(EVALUATE), by_name(PUBLISH)
    assert validate[("mlops_rows", "")] == 19762
    assert validate[("mlops_step_value", "expectations.failed_critical")] == 0
    assert not any(n.startswith("tables.") for _, n in validate), "per-table copies are too deep"
    assert evaluate[("mlops_gate_passed", "")] == 0.0
    assert evaluate[("mlops_candidate_metric", "roc_auc")] == 0.61
    assert publish[("mlops_records_sent", "")] == 4000
    assert publish[("mlops_step_value", "retries_by_reason.429")] == 2
    assert not any(n == "epoch_seconds" for _, n in by_name(TRAIN)), "lists are skipped"


def test_model_version_label_prefers_the_version_the_step_used() -> None:
    assert metrics.model_version(TRAIN) == "3"
    assert metrics.model_version(EVALUATE) == "3", "evaluate scores with scoring_version"
    assert metrics.model_version(PUBLISH) == ""
    assert {labels["model_version"] for _, labels, _ in metrics.samples(TRAIN)} == {"3"}


def test_every_sample_is_a_declared_metric_and_renders() -> None:
    from prometheus_client import generate_latest

    rows = metrics.status_samples(0, 1.5, now=1e9)
    for result in (TRAIN, VALIDATE, EVALUATE, PUBLISH, MONITOR):
        rows += metrics.samples(result)
    text = generate_latest(metrics.registry_of(rows)).decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert families <= set(metrics.METRICS)
    assert "mlops_step_last_success_timestamp_seconds" in families


def test_failure_has_no_success_timestamp() -> None:
    names = {m for m, _, _ in metrics.status_samples(1, 3.0)}
    assert "mlops_step_last_success_timestamp_seconds" not in names
    assert "mlops_step_last_success_timestamp_seconds" in {
        m for m, _, _ in metrics.status_samples(99, 3.0)
    }, "a gate that skips downstream still completed its step"


def test_no_gateway_configured_pushes_nothing(caplog) -> None:
    caplog.set_level(logging.INFO, "model_steps.metrics")
    assert metrics.push({}, metrics.grouping_key("p", "c", "ingest"), 0, 1.0, TRAIN) is False
    assert "MLOPS_PUSHGATEWAY_URL is not set" in caplog.text


def test_dead_gateway_warns_and_never_raises(caplog) -> None:
    env = {metrics.ENV_PUSHGATEWAY_URL: "http://127.0.0.1:9"}  # discard port: nothing listens
    started = time.monotonic()
    assert metrics.push(env, metrics.grouping_key("p", "c", "train"), 0, 1.0, TRAIN) is False
    assert time.monotonic() - started < 10, "a step must not wait long on its metrics"
    assert "could not push" in caplog.text


# ---- a real Pushgateway ---------------------------------------------------------------------


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    if gw.binary() is None:
        pytest.skip(f"no Pushgateway at {gw.TOOLS_BIN} nor on PATH: {gw.INSTALL_HINT}")
    with gw.pushgateway(tmp_path) as url:
        assert url is not None
        yield url


def served(url: str) -> dict[tuple[str, str, str], float]:
    """(metric, step, name) -> value of every mlops_ sample the gateway serves on /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, s.labels.get("step", ""), s.labels.get("name", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("mlops_")
    }


ARGS = ["train", "--pipeline", "customer_propensity", "--customer", "acme-foods",
        "--run-id", "manual__2026-03-01", "--data-date", "2026-03-01"]  # fmt: skip


def run_cli(monkeypatch, tmp_path: Path, url: str, body: Any) -> int:
    monkeypatch.setenv(metrics.ENV_PUSHGATEWAY_URL, url)
    monkeypatch.setenv("STEP_XCOM_PATH", str(tmp_path / "return.json"))
    monkeypatch.setattr(cli, "_step_body", lambda step: body)
    return cli.main(ARGS)


def test_cli_pushes_figures_then_a_failure_keeps_the_last_success(gateway, monkeypatch, tmp_path):
    assert run_cli(monkeypatch, tmp_path, gateway, lambda ctx: dict(TRAIN)) == 0
    first = served(gateway)
    assert first[("mlops_holdout_metric", "train", "roc_auc")] == pytest.approx(0.747649)
    assert first[("mlops_step_exit_code", "train", "")] == 0
    success_at = first[("mlops_step_last_success_timestamp_seconds", "train", "")]
    assert abs(success_at - time.time()) < 60

    def fails(ctx):
        raise StepError("the lake is not there")

    assert run_cli(monkeypatch, tmp_path, gateway, fails) == 1
    after = served(gateway)
    assert after[("mlops_step_exit_code", "train", "")] == 1
    assert after[("mlops_step_last_success_timestamp_seconds", "train", "")] == success_at
    assert after[("mlops_holdout_metric", "train", "roc_auc")] == pytest.approx(0.747649)
    assert after[("mlops_step_last_run_timestamp_seconds", "train", "")] >= success_at
    groups = gw.groups(gateway)
    key = {"pipeline": "customer_propensity", "customer": "acme-foods", "step": "train"}
    assert [g["labels"] for g in groups] == [{"job": "mlops_step", **key}]


def test_a_crashing_step_and_a_gate_skip_are_pushed_too(gateway, monkeypatch, tmp_path):
    def crashes(ctx):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_cli(monkeypatch, tmp_path, gateway, crashes)
    assert served(gateway)[("mlops_step_exit_code", "train", "")] == 1

    def skips(ctx):
        raise SkipDownstream("gate", {**EVALUATE})

    assert run_cli(monkeypatch, tmp_path, gateway, skips) == 99
    now = served(gateway)
    assert now[("mlops_step_exit_code", "train", "")] == 99
    assert now[("mlops_gate_passed", "train", "")] == 0
    assert ("mlops_step_last_success_timestamp_seconds", "train", "") in now


def test_a_failed_publish_pushes_its_refused_records_and_a_success_clears_them(
    gateway, monkeypatch, tmp_path
):
    """The publish step's result model through the CLI: a success replaces the group with
    failed_records 0; a failure with the CRM's refusals adds mlops_records_failed to it (POST),
    keeping the last success's figures; the next success replaces it again."""
    published = EXAMPLES["publish"]
    refused = published.model_copy(update={"failed_batches": 1, "failed_records": 20})
    assert run_cli(monkeypatch, tmp_path, gateway, lambda ctx: published) == 0
    assert served(gateway)[("mlops_records_failed", "train", "")] == 0

    def fails(ctx):
        raise StepError("the CRM rejected batch mlops-1a2b… with HTTP 422", result=refused)

    assert run_cli(monkeypatch, tmp_path, gateway, fails) == 1
    after = served(gateway)
    assert after[("mlops_records_failed", "train", "")] == 20
    assert after[("mlops_step_exit_code", "train", "")] == 1
    assert ("mlops_step_last_success_timestamp_seconds", "train", "") in after
    assert run_cli(monkeypatch, tmp_path, gateway, lambda ctx: published) == 0
    assert served(gateway)[("mlops_records_failed", "train", "")] == 0


def test_result_models_name_the_same_families_as_before() -> None:
    """The families come from the models' field metadata: every model's figure is the family
    its dict form had, so a typed result and its XCom JSON push the same samples."""
    for step, result in EXAMPLES.items():
        typed, plain = metrics.samples(result), metrics.samples(result.to_xcom())
        assert sorted(map(repr, typed)) == sorted(map(repr, plain)), step

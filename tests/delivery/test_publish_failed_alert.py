"""The MlopsPublishFailed alert fires on the CRM's refused records (``mlops_records_failed``), fed
by the series a real ``PublishResult`` becomes: the result model -> ``model_steps.metrics.samples``
(the one mapping the step CLI pushes) -> the series Prometheus scrapes from the Pushgateway (the
group's job and grouping key as labels) -> `promtool test rules` against the chart's rules."""

from __future__ import annotations

from pathlib import Path

import yaml
from delivery_helpers import output_of, run
from test_delivery_monitoring import platform, promtool, rules_file  # noqa: F401 - fixtures

from mlplatform_contract.results import EXAMPLES, PublishResult
from model_steps import metrics

GROUP = metrics.grouping_key("churn", "acme-foods", "publish")


def series(result: PublishResult) -> dict[str, float]:
    """The series the publish step's push leaves in Prometheus: one per sample of the result, with
    the Pushgateway's job and grouping-key labels (an empty label is no label)."""
    out = {}
    for name, labels, value in metrics.samples(result):
        every = {"job": metrics.JOB, **GROUP, **labels}
        text = ",".join(f'{k}="{v}"' for k, v in sorted(every.items()) if v != "")
        out[f"{name}{{{text}}}"] = value
    return out


def promtool_case(name: str, result: PublishResult, alerts: list[dict]) -> dict:
    inputs = [{"series": s, "values": f"{v:g}x10"} for s, v in series(result).items()]
    return {
        "name": name,
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [{"eval_time": "5m", "alertname": "MlopsPublishFailed",
                             "exp_alerts": alerts}],
    }  # fmt: skip


def test_refused_records_of_a_real_publish_result_fire_the_alert(rules_file, tmp_path):  # noqa: F811
    published = EXAMPLES["publish"]
    assert isinstance(published, PublishResult) and published.failed_records == 0
    refused = published.model_copy(
        update={"failed_batches": 1, "failed_records": 20, "sent_records": 1781,
                "error": "the CRM rejected batch mlops-1a2b… with HTTP 422"}
    )  # fmt: skip
    assert series(refused)[
        'mlops_records_failed{customer="acme-foods",job="mlops_step",pipeline="churn",'
        'step="publish"}'
    ] == 20  # fmt: skip
    labels = {"severity": "critical", "job": metrics.JOB, **GROUP}
    summary = "churn / acme-foods: publishing to the CRM failed"
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            promtool_case("records the CRM refused fire the alert", refused,
                          [{"exp_labels": labels, "exp_annotations": {"summary": summary}}]),
            promtool_case("a publish with nothing refused does not", published, []),
        ],
    }  # fmt: skip
    path = Path(tmp_path) / "publish_failed_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = run([promtool(), "test", "rules", str(path)])
    assert proc.returncode == 0, output_of(proc)

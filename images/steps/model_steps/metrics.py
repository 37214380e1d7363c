"""Every step's figures as Prometheus metrics, pushed to a Pushgateway when the step ends.

Batch jobs do not live long enough to be scraped, so the CLI pushes once per step (success, skip
or failure) to the gateway named by ``MLOPS_PUSHGATEWAY_URL`` (the runtime sets it: the embedded
platform locally, the ConfigMap ``step-env`` in the cluster). No gateway configured: one log line,
nothing pushed. A gateway that does not answer: a warning after a few tries, never a failed step.

Grouping key ``job=mlops_step, pipeline, customer, step``, with no run id: a Pushgateway keeps a
group until it is replaced, so a run id there would leave one group per run forever. A step that
ends with a result (exit 0 or 99) *replaces* its group (HTTP PUT), so figures a later run no
longer reports disappear; a failed step only *adds* its status metrics (POST), so the group keeps
the last good run's figures and ``mlops_step_last_success_timestamp_seconds``, which the alert
"has not succeeded within its schedule" reads (helm/platform/templates/prometheusrules.yaml).

The figures come from the step's result model (mlplatform_contract.results) through one mapping
(:func:`samples`): a field whose metadata names a section family has its numeric leaves as one
family labelled by ``name`` (``metrics`` -> holdout metrics, ``realized``/``uplift`` -> the monitor
step's, ``drift`` -> PSI and its thresholds), a field naming a family of its own is that family
(rows, records sent, records the CRM refused, the gate decision), and every other numeric figure
(to :data:`MAX_DEPTH` levels) is ``mlops_step_value{name=...}``. No per-step code here: a new
figure is a new field of the step's model. A failed publish still pushes its partial result
(``failed_records``), added to the group like the other failure metrics. :data:`METRICS` is the
one list of metric names; the Grafana dashboard and the alert rules are checked against it
(tests/delivery/test_delivery_monitoring.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mlplatform_contract.environment import EnvironmentError_, StepEnvironment
from mlplatform_contract.results import RESULTS, VERSION_FIELDS, AnyResult

log = logging.getLogger(__name__)

ENV_PUSHGATEWAY_URL = "MLOPS_PUSHGATEWAY_URL"
JOB = "mlops_step"
# e.g. raw_rows.<table>, expectations.failed_critical; deeper tables are per-table copies
MAX_DEPTH = 2


def _union_families() -> tuple[dict[str, str], dict[str, str]]:
    named: dict[str, str] = {}
    sections: dict[str, str] = {}
    for model in RESULTS.values():
        own_named, own_sections = model.families()
        named |= own_named
        sections |= own_sections
    return named, sections


# metric name -> help. The one list the dashboard and the alert rules may read.
METRICS: dict[str, str] = {
    "mlops_step_value": "A numeric figure of the step's result (name: its dotted key).",
    "mlops_rows": "Rows the step read (ingest, validate) or wrote (score).",
    "mlops_records_sent": "CRM records the publish step sent in this run.",
    "mlops_records_failed": "CRM records the publish step could not send.",
    "mlops_records_lost_to_arbitration": "Selected contacts another campaign of the day won, or "
    "the per-day cap denied (publish).",
    "mlops_gate_passed": "1 when the evaluate gate passed the candidate, 0 when it rejected it.",
    "mlops_holdout_metric": "The trained candidate's holdout metric (train).",
    "mlops_candidate_metric": "The candidate's metric as the evaluate gate saw it.",
    "mlops_champion_metric": "The champion's metric on the same holdout (evaluate).",
    "mlops_realized_metric": "The model's realized metric on outcomes that landed (monitor).",
    "mlops_uplift": "Uplift of the treated over the control group (monitor).",
    "mlops_drift": "Drift: max_psi, top.<feature> PSI and the warn_at/fail_at thresholds (validate).",
    "mlops_step_exit_code": "The step's exit code: 0 ok, 99 skip downstream, else failed.",
    "mlops_step_duration_seconds": "Wall time of the step's process, start to report.",
    "mlops_step_last_run_timestamp_seconds": "When the step last ended, however it ended.",
    "mlops_step_last_success_timestamp_seconds": "When the step last ended with exit 0 or 99.",
}
# The families of result fields come from the step result models (mlplatform_contract.results: a
# field's metadata names its family). A plain dict (a model's own step, or a test's trimmed result)
# is read with the union of every model's families.
NAMED, SECTIONS = _union_families()

Sample = tuple[str, dict[str, str], float]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _leaves(tree: Mapping[str, Any], depth: int, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric leaves of a nested mapping as (dotted key, value); lists and strings are skipped."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if depth > 1:
                yield from _leaves(value, depth - 1, f"{name}.")
        elif (number := _number(value)) is not None:
            yield name, number


def model_version(result: AnyResult | Mapping[str, Any]) -> str:
    """The model version the step worked with ('' for steps before train)."""
    if not isinstance(result, Mapping):
        return result.version_label()
    return next((str(result[k]) for k in VERSION_FIELDS if result.get(k) is not None), "")


def samples(result: AnyResult | Mapping[str, Any]) -> list[Sample]:
    """The one mapping from a step's result to (metric, labels, value) samples: a result model's
    fields name their families; a plain dict is read with every model's."""
    labels = {"model_version": model_version(result)}
    if isinstance(result, Mapping):
        named, sections, data = NAMED, SECTIONS, result
    else:
        (named, sections), data = result.families(), result.to_xcom()
    out: list[Sample] = []
    for key, value in data.items():
        if key in sections and isinstance(value, Mapping):
            out += [(sections[key], {**labels, "name": n}, v) for n, v in _leaves(value, 8)]
            continue
        if key in named and (number := _number(value)) is not None:
            out.append((named[key], labels, number))
        tree = {key: value}
        out += [("mlops_step_value", {**labels, "name": n}, v) for n, v in _leaves(tree, MAX_DEPTH)]
    return out


def status_samples(exit_code: int, seconds: float, now: float | None = None) -> list[Sample]:
    """What every push carries: exit code, duration, and when the step ended (and succeeded)."""
    now = time.time() if now is None else now
    out: list[Sample] = [
        ("mlops_step_exit_code", {}, float(exit_code)),
        ("mlops_step_duration_seconds", {}, seconds),
        ("mlops_step_last_run_timestamp_seconds", {}, now),
    ]
    if exit_code in (0, 99):
        out.append(("mlops_step_last_success_timestamp_seconds", {}, now))
    return out


def registry_of(rows: list[Sample]):  # type: ignore[no-untyped-def]
    """A fresh CollectorRegistry holding ``rows`` as gauges (one per metric name)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for name, labels, value in rows:
        if name not in METRICS:
            raise ValueError(f"{name} is not in model_steps.metrics.METRICS")
        gauge = gauges.get(name) or Gauge(name, METRICS[name], sorted(labels), registry=registry)
        gauges[name] = gauge
        (gauge.labels(**labels) if labels else gauge).set(value)
    return registry


def grouping_key(pipeline: str, customer: str, step: str) -> dict[str, str]:
    return {"pipeline": pipeline, "customer": customer, "step": step}


def push(
    env: Mapping[str, str],
    key: dict[str, str],
    exit_code: int,
    seconds: float,
    result: AnyResult | Mapping[str, Any] | None,
    *,
    replace: bool | None = None,
) -> bool:
    """Push one step's metrics; True when the gateway took them. Never raises."""
    try:
        url = StepEnvironment.of(env).pushgateway_url
    except EnvironmentError_ as exc:  # metrics must never fail the step
        log.warning("metrics: %s; nothing pushed", exc)
        return False
    if not url:
        log.info("metrics: %s is not set, nothing pushed", ENV_PUSHGATEWAY_URL)
        return False
    try:
        rows = status_samples(exit_code, seconds) + (samples(result) if result is not None else [])
        registry = registry_of(rows)
        _send(url, key, registry, replace=result is not None if replace is None else replace)
    except Exception as exc:  # metrics must never fail the step
        log.warning("metrics: could not push to %s (%s); the step goes on", url, exc)
        return False
    log.info("metrics: pushed %d samples to %s (group %s)", len(rows), url, key)
    return True


def _send(url: str, key: dict[str, str], registry: Any, *, replace: bool) -> None:
    """PUT (replace the group) or POST (add to it), with a short retry: a gateway restart is brief,
    and a step must not wait long on its metrics."""
    from prometheus_client import push_to_gateway, pushadd_to_gateway
    from tenacity import retry, stop_after_attempt, wait_exponential

    send = push_to_gateway if replace else pushadd_to_gateway

    @retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=2), reraise=True)
    def attempt() -> None:
        send(url, job=JOB, registry=registry, grouping_key=key, timeout=5)

    attempt()

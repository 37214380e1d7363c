"""The monitor's view over time: the trend report, and whether retraining is due.

The history is every committed monitoring result of a pipeline and customer (one per scored run).
The report draws the gate's comparison metric (and every metric the gate thresholds) per scored run
against the threshold line, and tabulates the uplift; it is rewritten by every monitoring run::

    <lake>/monitoring/<pipeline>/customer=<c>/report/index.html, trend.png
"""

from __future__ import annotations

import datetime as dt
import html
import io
import logging
from typing import Any

from mlplatform_contract.layout import MONITORING
from mlplatform_contract.results import MonitoredRun, RetrainDecision
from mlplatform_contract.tasks import TASKS
from model_steps import lake, monitoring
from model_steps.contract import StepContext
from model_steps.model_loader import LoadedModel

log = logging.getLogger(__name__)

MONITOR_ZONE = MONITORING


def history(ctx: StepContext) -> list[MonitoredRun]:
    """Every committed monitoring result of this pipeline and customer, by data date."""
    root, found = ctx.customer_path(MONITOR_ZONE), []
    for folder in lake.list_dirs(root):
        uri = lake.join(root, folder)
        if folder.startswith("run=") and lake.exists(lake.join(uri, lake.MANIFEST)):
            found.append(MonitoredRun.model_validate(lake.read_manifest(uri)["figures"]))
    return sorted(found, key=lambda f: (f.data_date, f.scored_run_key))


def thresholds(loaded: LoadedModel) -> dict[str, float]:
    gate, info = loaded.platform.gate, TASKS[loaded.model.task]
    return dict(info.default_thresholds if gate.thresholds is None else gate.thresholds)


def plotted_metrics(loaded: LoadedModel) -> list[str]:
    info = TASKS[loaded.model.task]
    first = loaded.platform.gate.metric or info.default_metric
    return [first, *[m for m in sorted(thresholds(loaded)) if m != first]]


def trend_png(loaded: LoadedModel, runs: list[MonitoredRun]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, bounds = plotted_metrics(loaded), thresholds(loaded)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7, 2.6 * len(metrics)), squeeze=False)
    days = [r.data_date for r in runs]
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        ax.plot(days, [r.realized.get(metric) for r in runs], marker="o", label="realized")
        if metric in bounds:
            ax.axhline(bounds[metric], color="tab:red", linestyle="--", label="gate threshold")
        ax.set_title(f"{loaded.model.name} / {metric} per scored run")
        ax.set_xlabel("data date of the scored run")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


def _row(run: MonitoredRun, metrics: list[str]) -> str:
    up = run.uplift
    if up.get("verdict") == "inconclusive":
        lift = f"inconclusive ({up['n_treated']} treated, {up['n_control']} control)"
    else:
        lift = (
            f"{up['difference']:+.4f} [{up['ci_low']:+.4f}, {up['ci_high']:+.4f}] "
            f"{up['verdict']} ({up['n_treated']} / {up['n_control']})"
        )
    cells = [run.data_date, run.scored_run_key, f"v{run.model_version}"]
    cells += [f"{_value(run.realized.get(m)):.4f}" for m in metrics]
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in [*cells, lift]) + "</tr>"


def _value(value: float | None) -> float:
    return float("nan") if value is None else value


def write(ctx: StepContext, loaded: LoadedModel, runs: list[MonitoredRun]) -> str:
    """Rewrite the report from the whole history; returns its index.html URI."""
    metrics = plotted_metrics(loaded)
    folder = ctx.layout.customer.monitoring_report
    lake.write_bytes_atomic(lake.join(folder, "trend.png"), trend_png(loaded, runs))
    head = "".join(f"<th>{m}</th>" for m in ["data date", "scored run", "version", *metrics])
    body = "\n".join(_row(r, metrics) for r in runs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{loaded.model.name} "
        f"{ctx.customer} monitoring</title></head><body>"
        f"<h1>{loaded.model.name} for {ctx.customer}: realized performance</h1>"
        f"<p>Thresholds: {html.escape(str(thresholds(loaded)))}</p>"
        "<img src='trend.png' alt='realized metric per scored run'>"
        f"<table border='1'><tr>{head}<th>uplift treated - control [interval] verdict "
        f"(treated / control)</th></tr>\n{body}</table></body></html>"
    )
    index = lake.join(folder, "index.html")
    lake.write_bytes_atomic(index, page.encode())
    return index


def degradation(loaded: LoadedModel, latest: MonitoredRun) -> list[str]:
    """The gate's thresholds the latest realized figures miss."""
    info, reasons = TASKS[loaded.model.task], []
    for metric, bound in sorted(thresholds(loaded).items()):
        value = latest.realized.get(metric)
        if value is not None and value == value and not info.better(metric, value, bound):
            reasons.append(f"realized {metric} {value:.4f} misses the gate threshold {bound}")
    return reasons


def champion(ctx: StepContext) -> tuple[str, dt.datetime] | None:
    """(version, registered at) of the champion, or None without one."""
    from model_steps.tracking import champion_version, connect, registered_model_name, tracking_uri

    connect(tracking_uri(ctx))
    mv = champion_version(registered_model_name(ctx.pipeline, ctx.customer))
    if mv is None:
        return None
    return str(mv.version), dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)


def champion_drift(loaded: LoadedModel, version: str, scored: list[Any]) -> float | None:
    """PSI of the champion's newest scores (with several classes: its predicted-class shares)
    against its first scored run's (``scored``: the monitor step's ScoredRun list, oldest first)."""
    runs = [r for r in scored if r.model_version == version]
    if len(runs) < 2:
        return None
    column = loaded.model.output_column

    def scores(uri: str) -> Any:
        return lake.read_parquet_table(uri, columns=[column])[0][column].to_numpy(
            zero_copy_only=False
        )

    first, last = scores(runs[0].scores_uri), scores(runs[-1].scores_uri)
    if loaded.model.classes:  # the predicted class's shares
        return monitoring.class_drift(first, last, loaded.model.classes)
    return monitoring.score_drift(first, last)


def retrain_decision(
    ctx: StepContext, loaded: LoadedModel, runs: list[MonitoredRun], scored: list[Any]
) -> RetrainDecision:
    """Whether to ask for retraining: the champion degraded or drifted, outside the cool-down."""
    settings = loaded.platform.monitoring
    if not settings.retrain_on_degradation:
        return RetrainDecision(
            requested=False, reasons=["monitoring.retrain_on_degradation is off"]
        )
    current = champion(ctx)
    if current is None:
        return RetrainDecision(requested=False, reasons=["no champion yet"])
    version, registered = current
    own = [r for r in runs if r.model_version == version]
    reasons = degradation(loaded, own[-1]) if own else []
    drift = champion_drift(loaded, version, scored)
    if drift is not None and drift > loaded.platform.validation.drift_psi_fail:
        reasons.append(f"score drift PSI {drift:.3f} > drift_psi_fail")
    until = registered + dt.timedelta(hours=settings.retrain_cooldown_hours)
    cooling = dt.datetime.now(dt.UTC) < until
    decision = RetrainDecision(
        requested=bool(reasons) and not cooling,
        degraded=bool(reasons),
        reasons=reasons or [f"champion v{version} is healthy"],
        champion_version=version,
        score_drift_psi=drift,
        cooldown_until=until.isoformat(timespec="seconds"),
    )
    if reasons and cooling:
        decision.reasons.append(f"but v{version} is in its cool-down until {until:%Y-%m-%d %H:%M}")
    log.info("retraining %s: %s", "requested" if decision.requested else "not requested",
             "; ".join(decision.reasons))  # fmt: skip
    return decision

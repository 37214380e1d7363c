"""Monitor step: once a scored run's label window has passed, how did its scores do?

For every scored run of this pipeline and customer (``<scores root>/…/run=<key>/``) whose label
window ``(data date, data date + label_window_days]`` lies on or before this run's data date and that
has no monitoring result yet, the step

1. reads the raw drops of that window and applies the **model's own label hook** to them (the
   platform's point-in-time cut, as ingest does for training), so training and monitoring share
   one definition of the outcome; for a campaign whose run was drawn for ``reward: click``, the
   model's ``clicks`` hook on the same frames gives who clicked (the bandit's reward);
2. joins the run's scores with those outcomes (and with the campaign's arms that publish
   recorded), and computes the realized metrics, calibration, top-decile lift, the pushed contacts'
   realized outcome, and the uplift of treated over control with its interval
   (:mod:`model_steps.monitoring`);
3. logs them to MLflow against the model version that scored (a run per scored run, found again
   by tag on a retry; the version's tags carry the latest realized figures), then commits::

       <lake>/monitoring/<pipeline>/customer=<c>/run=<scored run key>/_MANIFEST.json
           columns: <key>, score | prediction | score_<class>…, outcome, arm[, clicked];
           manifest: figures

A window that has not closed, or whose drops have not all landed (a late drop), leaves that run
pending with a log line: the next monitoring run picks it up. Afterwards the step redraws the trend
report (``…/customer=<c>/report/index.html`` + ``trend.png``: the gate's metric per scored run with
its threshold) and says whether retraining is due: the champion's realized metric misses the
gate's threshold, or its scores drift beyond ``validation.drift_psi_fail``, and the champion is
older than ``monitoring.retrain_cooldown_hours``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from mlplatform_contract.results import MonitoredRun, MonitorResult
from mlplatform_contract.tasks import TASKS
from model_steps import campaign, campaign_loop, lake, model_loader, monitoring, rollback
from model_steps.contract import StepContext, StepError
from model_steps.features import point_in_time
from model_steps.model_api import Model, ModelContext
from model_steps.model_loader import LoadedModel
from model_steps.monitor_report import MONITOR_ZONE
from model_steps.raw_reader import plan_files, raw_plan, raw_table_root, read_raw
from model_steps.scoring import scores_root
from model_steps.spark_config import get_session, spark_conf

log = logging.getLogger(__name__)

OUTCOME = "outcome"
CLICKED = "clicked"  # a click-rewarded campaign's reward: the contact clicked in the label window


@dataclass(frozen=True)
class ScoredRun:
    run_key: str
    data_date: dt.date
    scores_uri: str
    manifest: dict[str, Any]

    @property
    def model_version(self) -> str:
        return str(self.manifest.get("model_version"))


def scored_runs(ctx: StepContext) -> list[ScoredRun]:
    """Every committed scores table of this pipeline and customer, oldest data date first."""
    root, runs = scores_root(ctx), []
    for folder in lake.list_dirs(root):
        uri = lake.join(root, folder)
        if not folder.startswith("run=") or not lake.exists(lake.join(uri, lake.MANIFEST)):
            continue
        manifest = lake.read_manifest(uri)
        day = manifest.get("data_date") or lake.read_manifest(manifest["features_uri"])["data_date"]
        runs.append(ScoredRun(folder[len("run=") :], dt.date.fromisoformat(day), uri, manifest))
    return sorted(runs, key=lambda r: (r.data_date, r.run_key))


def missing_drops(ctx: StepContext, loaded: LoadedModel, outcome_date: dt.date) -> list[str]:
    """Event tables whose drops do not reach ``outcome_date`` yet (the window's last day)."""
    model, window_days = loaded.model, loaded.platform.data.label_window_days
    plan = raw_plan(model.raw_tables, outcome_date, lookback_days=1, label_window_days=window_days)
    missing = []
    for table in model.raw_tables:
        if not table.windowed:
            continue
        lo, hi = plan[table.name]
        days = [d for d, _ in plan_files(ctx.lake_uri, ctx.customer, table, lo, hi)]
        if not days or max(days) < hi.isoformat():
            last = max(days) if days else "none"
            where = raw_table_root(ctx.lake_uri, ctx.customer, table.name)
            missing.append(f"{table.name} (last drop {last}, needs dt={hi} in {where})")
    return missing


def label_window(
    spark: Any, ctx: StepContext, loaded: LoadedModel, run: ScoredRun
) -> tuple[dict[str, Any], ModelContext]:
    """The raw frames of the run's label window, cut as the label sees them, and the context."""
    model, data = loaded.model, loaded.platform.data
    outcome_date = run.data_date + dt.timedelta(days=data.label_window_days)
    frames, report = read_raw(
        spark, ctx.lake_uri, ctx.customer, outcome_date,
        tables=model.raw_tables, lookback_days=1, label_window_days=data.label_window_days,
        guards=loaded.platform.raw_guards.model_dump(),
    )  # fmt: skip
    for warning in report.warnings:
        log.warning("raw input of the outcome window: %s", warning)
    mctx = model_loader.model_context(ctx, loaded, cutoff=run.data_date, lookback_days=1)
    _, after = point_in_time(frames, model, mctx.window)
    return after, mctx


def outcomes(after: dict[str, Any], model: Model, mctx: ModelContext) -> Any:
    """(key, outcome) of everybody with an outcome in the run's label window, as Arrow."""
    from pyspark.sql import functions as F

    label = model.label(after, mctx)
    return label.select(
        F.col(model.key).cast("string").alias(model.key),
        F.col(model.label_column).cast("double").alias(OUTCOME),
    ).toArrow()


def clicks(after: dict[str, Any], model: Model, mctx: ModelContext) -> Any:
    """(key, clicked = 1.0) of everybody who clicked in the run's label window (the model's
    ``clicks`` hook on the same cut frames as the label), as Arrow."""
    from pyspark.sql import functions as F

    if model.clicks is None:
        raise StepError(f"model {model.name} declares no clicks hook: reward 'click' needs one")
    keys = model.clicks(after, mctx).select(F.col(model.key).cast("string").alias(model.key))
    return keys.distinct().withColumn(CLICKED, F.lit(1.0)).orderBy(model.key).toArrow()


def joined(
    loaded: LoadedModel, run: ScoredRun, observed: Any, ctx: StepContext, clicked: Any = None
) -> Any:
    """Scores ⋈ outcomes (missing: the model's label_fill) ⋈ campaign arms, sorted by key; with
    ``clicked`` (a click-rewarded campaign) also ⋈ clicks (missing: 0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    model = loaded.model
    key, values = model.key, list(model.class_columns or (model.output_column,))
    scores, _ = lake.read_parquet_table(run.scores_uri, columns=[key, *values])
    scores = pa.table({key: pc.cast(scores[key], pa.string()), **{v: scores[v] for v in values}})
    table = scores.join(observed, key, join_type="left outer")
    outcome = pc.fill_null(table[OUTCOME], float(model.label_fill))
    table = table.set_column(table.schema.get_field_index(OUTCOME), OUTCOME, outcome)
    arms_uri = ctx.run_path(campaign.CAMPAIGN_ZONE, run.run_key)
    if lake.exists(lake.join(arms_uri, lake.MANIFEST)):
        arms, _ = lake.read_parquet_table(arms_uri, columns=[key, "arm"])
        table = table.join(arms, key, join_type="left outer")
    else:
        table = table.append_column("arm", pa.nulls(table.num_rows, pa.string()))
    if clicked is not None:
        table = table.join(clicked, key, join_type="left outer")
        index = table.schema.get_field_index(CLICKED)
        table = table.set_column(index, CLICKED, pc.fill_null(table[CLICKED], 0.0))
    return table.sort_by(key).combine_chunks()


def figures(loaded: LoadedModel, run: ScoredRun, table: Any) -> MonitoredRun:
    """Realized metrics over every scored contact, the pushed contacts' outcome, the uplift. With
    several classes the outcome the pushed contacts and the uplift compare is whether each
    contact's class was the predicted one (monitoring.hits)."""
    import numpy as np

    model, settings = loaded.model, loaded.platform.monitoring
    y = table[OUTCOME].to_numpy(zero_copy_only=False)
    columns = model.class_columns or (model.output_column,)
    p = np.column_stack([table[c].to_numpy(zero_copy_only=False) for c in columns])
    realized = monitoring.realized(model.task, y, p, model.classes)
    if model.classes:
        y = monitoring.hits(y, p)
    arm = np.asarray(table["arm"].to_pylist(), dtype=object)
    treated, control = y[arm == campaign.TREATED], y[arm == campaign.CONTROL]
    return MonitoredRun(
        scored_run_key=run.run_key,
        data_date=run.data_date.isoformat(),
        model_version=run.model_version,
        registered_model=run.manifest.get("registered_model"),
        rows=int(table.num_rows),
        realized=realized,
        pushed={
            "contacts": int(treated.size),
            "realized_outcome": round(float(treated.mean()), 6) if treated.size else None,
        },
        uplift=monitoring.uplift(
            treated,
            control,
            min_arm=settings.min_arm_size,
            confidence=settings.confidence,
            positive_outcome=model.positive_outcome,
        ),
    )


def log_to_mlflow(ctx: StepContext, result: MonitoredRun) -> dict[str, Any]:
    """One MLflow run per monitored scored run (reused on a retry), naming the version it
    measured (tag ``model_version``); the registry is only read (docs/registry-access.md)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from model_steps.tracking import connect, experiment_name, run_tags, tracking_uri

    connect(tracking_uri(ctx))
    client = mlflow.MlflowClient()
    experiment = mlflow.set_experiment(experiment_name(ctx.pipeline, ctx.customer))
    key = result.scored_run_key
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlops.monitored_run` = '{key}' and tags.customer = '{ctx.customer}'",
        max_results=1,
    )
    tags = run_tags(ctx, {"mlops.kind": "monitoring", "mlops.monitored_run": key,
                          "model_version": result.model_version})  # fmt: skip
    flat = {f"realized_{k}": v for k, v in result.realized.items() if _finite(v)}
    flat |= {f"uplift_{k}": v for k in ("difference", "ci_low", "ci_high")
             if _finite(v := result.uplift.get(k))}  # fmt: skip
    flat |= campaign_loop.metrics(result.campaign)
    run_id = found[0].info.run_id if found else None
    with mlflow.start_run(run_id=run_id, run_name=f"monitor {ctx.customer} {key}", tags=tags) as r:
        mlflow.log_metrics(flat)
        mlflow.log_dict(result.model_dump(mode="json", exclude={"mlflow"}), "monitoring.json")
    version = {"mlflow_run_id": r.info.run_id, "version_found": True}
    try:  # the figures live on the monitoring run (tag model_version): the monitor only reads
        client.get_model_version(result.registered_model, result.model_version)  # the registry
    except MlflowException as exc:  # the version was deleted since it scored: report it
        log.warning("model version %s v%s is gone from the registry (%s): its figures are on "
                    "the monitoring run only", result.registered_model,
                    result.model_version, exc.error_code)  # fmt: skip
        version["version_found"] = False
    return version


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


def monitor_run(ctx: StepContext, loaded: LoadedModel, spark: Any, run: ScoredRun) -> MonitoredRun:
    """Measure one scored run, log it, then commit (the manifest is the commit point)."""
    after, mctx = label_window(spark, ctx, loaded, run)
    on_clicks = campaign_loop.run_reward(ctx, run.run_key) == "click"
    clicked = clicks(after, loaded.model, mctx) if on_clicks else None
    table = joined(loaded, run, outcomes(after, loaded.model, mctx), ctx, clicked)
    result = figures(loaded, run, table)  # the uplift stays on the label's outcome
    column = CLICKED if on_clicks else OUTCOME  # what the bandit and the OPE learn from
    result.campaign = campaign_loop.learn(ctx, loaded, run.run_key, table, column)
    result.mlflow = log_to_mlflow(ctx, result)
    lake.commit_parquet_table(
        ctx.run_path(MONITOR_ZONE, run.run_key),
        [table],
        {
            "table": "monitoring",
            "pipeline": ctx.pipeline,
            "customer": ctx.customer,
            "monitored_by": ctx.run_key,
            "figures": result.model_dump(mode="json"),
        },
    )
    log.info("monitored run %s (data date %s, v%s): %s; uplift %s",
             run.run_key, run.data_date, run.model_version,
             _headline(loaded.model.task, result), result.uplift["verdict"])  # fmt: skip
    return result


def _headline(task: str, result: MonitoredRun) -> str:
    realized = result.realized
    return ", ".join(f"realized {m} {realized[m]:.4f}" for m in TASKS[task].metrics[:2])


def plan(
    ctx: StepContext, loaded: LoadedModel, runs: list[ScoredRun]
) -> tuple[list[ScoredRun], list[dict[str, Any]]]:
    """(runs to monitor now, runs still pending with the reason), over the scored runs."""
    due, pending = [], []
    window_days = loaded.platform.data.label_window_days
    redo = bool(ctx.params.get("remonitor"))
    for run in runs:
        done = lake.exists(ctx.run_path(MONITOR_ZONE, run.run_key, lake.MANIFEST))
        if done and not redo:
            continue
        closes = run.data_date + dt.timedelta(days=window_days)
        if closes > ctx.data_date:
            reason = f"its label window closes on {closes} (after this run's data date)"
        elif missing := missing_drops(ctx, loaded, closes):
            reason = "outcome drops not landed yet: " + "; ".join(missing)
        else:
            due.append(run)
            continue
        pending.append({"run_key": run.run_key, "data_date": run.data_date.isoformat(),
                        "reason": reason})  # fmt: skip
        log.info("run %s (data date %s) stays pending: %s", run.run_key, run.data_date, reason)
    return due, pending


def run(ctx: StepContext) -> MonitorResult:
    from model_steps import monitor_report

    started = time.monotonic()
    loaded = model_loader.load(ctx)
    runs = scored_runs(ctx)  # listed once: the plan and the drift check both read them
    due, pending = plan(ctx, loaded, runs)
    campaign_loop.note_pending(ctx, loaded.platform, pending)
    results = []
    if due:
        spark = get_session(spark_conf(ctx.config, ctx.lake_uri, ctx.env))
        results = [monitor_run(ctx, loaded, spark, r) for r in due]
    history = monitor_report.history(ctx)
    report_uri = monitor_report.write(ctx, loaded, history) if history else None
    retrain = monitor_report.retrain_decision(ctx, loaded, history, runs)
    back = rollback.request(ctx, loaded, history)  # settings monitoring.auto_rollback
    retrain = rollback.hold_retrain(retrain, back)
    degraded, reasons = rollback.notice(retrain, back)
    latest = results[-1] if results else (history[-1] if history else None)
    named = {"scored_run_key", "data_date", "model_version"}
    return MonitorResult(
        status="monitored" if results else "nothing_due",
        monitored=[r.scored_run_key for r in results],
        pending=pending,
        realized=latest.realized if latest else {},
        uplift=latest.uplift if latest else {},
        latest_run=latest.model_dump(include=named) if latest else None,
        campaign=latest.campaign if latest else None,
        retrain=retrain,
        rollback=back,
        # the owner's notifier reads this (plugins/mlplatform/notify.py)
        degraded=degraded,
        reasons=reasons,
        report_uri=report_uri,
        seconds=round(time.monotonic() - started, 1),
    )

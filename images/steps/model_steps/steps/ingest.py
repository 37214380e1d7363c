"""Ingest step (PySpark): raw zone -> the run's two tables of the model's entities for its data date.

The data date is the as-of date: the last day whose raw drops have landed (a scheduled run's is the
day before it runs). From one read of the raw zone the step builds

* ``features``: the labelled training table at ``training_cutoff`` (data date - label window), so
  every label's window is complete; train and evaluate read it;
* ``population``: the unlabelled table at the data date itself, the freshest features of everybody
  to score; score reads it.

Each is committed atomically (data first, manifest last)::

    <lake>/<table>/<pipeline>/customer=<tenant>/run=<run key>/attempt=<id>/part-*.parquet
    <lake>/<table>/<pipeline>/customer=<tenant>/run=<run key>/_MANIFEST.json

The population is committed before the training table, whose manifest is the step's commit point.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from mlplatform_contract.results import IngestResult
from model_steps import lake, model_loader
from model_steps.contract import StepContext
from model_steps.features import FEATURES, POPULATION, build_table, training_cutoff
from model_steps.model_api import Model
from model_steps.raw_reader import read_raw
from model_steps.spark_config import get_session, spark_conf

log = logging.getLogger(__name__)


def commit_table(
    df: Any, table_uri: str, n_files: int, manifest: dict[str, Any], model: Model, labelled: bool
) -> dict[str, Any]:
    """Write ``df`` into a new attempt folder, commit it with its manifest, drop older attempts."""
    from pyspark.sql import functions as F

    key, label = model.key, model.label_column
    attempt = lake.new_attempt(table_uri)
    (
        df.repartition(n_files, key)
        .sortWithinPartitions(key)
        .write.mode("overwrite")
        .parquet(lake.spark_uri(attempt.uri))
    )
    written = df.sparkSession.read.parquet(lake.spark_uri(attempt.uri))
    counts = [F.count(F.lit(1)).alias("rows")]
    if labelled:
        counts.append(F.sum(label).alias("label_sum"))
    stats = written.agg(*counts).collect()[0]
    rows = int(stats["rows"])
    manifest = {**manifest, "rows": rows}
    if labelled:  # the label's mean: a classifier's positive rate, a regression's mean target
        total = float(stats["label_sum"] or 0)
        manifest.update(label=label, label_rate=round(total / rows, 6) if rows else None)
        if model.task == "binary_classification":
            manifest["label_positives"] = int(total)
    files = sorted(f for f in lake.list_files(attempt.uri) if f.endswith(".parquet"))
    return attempt.commit(manifest, files)


def run(ctx: StepContext) -> IngestResult:
    started = time.monotonic()
    loaded = model_loader.load(ctx)
    model, cfg = loaded.model, loaded.platform.data
    lookback, label_window = cfg.lookback_days, cfg.label_window_days
    cutoff = training_cutoff(ctx.data_date, label_window)
    spark = get_session(spark_conf(ctx.config, ctx.lake_uri, ctx.env))
    frames, report = read_raw(
        spark,
        ctx.lake_uri,
        ctx.customer,
        ctx.data_date,
        tables=model.raw_tables,
        lookback_days=lookback,
        label_window_days=label_window,
        require_label_window=cfg.require_label_window,
        guards=loaded.platform.raw_guards.model_dump(),
    )
    for w in report.warnings:
        log.warning("raw input: %s", w)

    entities = max((report.rows[t.name] for t in model.raw_tables if not t.windowed), default=0)
    n_files = max(1, -(-entities // cfg.output_rows_per_file))
    common = _common_manifest(ctx, model, lookback, label_window, report)
    tables = _build_and_commit(ctx, loaded, frames, n_files, common, cutoff)
    spark.catalog.clearCache()

    training, population = tables[FEATURES], tables[POPULATION]
    seconds = round(time.monotonic() - started, 1)
    log.info(
        "%s: training table of %d rows at cutoff %s, label mean %s; population of %d at %s; "
        "raw rows %s, %.1fs",
        model.name,
        training["rows"],
        cutoff,
        training["label_rate"],
        population["rows"],
        ctx.data_date,
        report.rows,
        seconds,
    )
    return IngestResult(
        model=model.name,
        features_uri=ctx.lake_path(FEATURES),
        manifest_uri=lake.join(ctx.lake_path(FEATURES), lake.MANIFEST),
        population_uri=ctx.lake_path(POPULATION),
        cutoff_date=cutoff.isoformat(),
        rows=training["rows"],
        population_rows=population["rows"],
        label_rate=training["label_rate"],
        raw_rows=report.rows,
        warnings=report.warnings,
        status="passed_with_warnings" if report.warnings else "passed",
        seconds=seconds,
    )


def _common_manifest(
    ctx: StepContext, model: Model, lookback: int, label_window: int, report: Any
) -> dict[str, Any]:
    """What both tables' manifests say about the run and its raw input."""
    return {
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "model": model.name,
        "task": model.task,
        "run_id": ctx.run_id,
        "run_key": ctx.run_key,
        "data_date": ctx.data_date.isoformat(),
        "lookback_days": lookback,
        "label_window_days": label_window,
        "key": model.key,
        "raw": {"files": report.files, "rows": report.rows, "drop_days": report.days},
        "warnings": report.warnings,
    }


def _build_and_commit(
    ctx: StepContext, loaded: model_loader.LoadedModel, frames: dict[str, Any], n_files: int,
    common: dict[str, Any], cutoff: dt.date,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The population (as of the data date), then the training table (as of the cutoff, its
    manifest the step's commit point), each built by the model's hooks and committed."""
    model = loaded.model
    tables = {}
    for table, as_of, labelled in ((POPULATION, ctx.data_date, False), (FEATURES, cutoff, True)):
        mctx = model_loader.model_context(ctx, loaded, cutoff=as_of)
        df = build_table(frames, model, mctx, labelled)
        tables[table] = commit_table(
            df,
            ctx.lake_path(table),
            n_files,
            {**common, "table": table, "cutoff_date": as_of.isoformat(),
             "schema": model.table_schema(labelled)},
            model,
            labelled,
        )  # fmt: skip
    for df in frames.values():
        df.unpersist()
    return tables

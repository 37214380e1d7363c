"""Ingest step (PySpark): raw zone -> the run's two per-diner tables for its data date.

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

from model_steps import lake
from model_steps.contract import StepContext
from model_steps.features import (
    FEATURE_SCHEMA,
    KEY,
    LABEL,
    POPULATION,
    POPULATION_SCHEMA,
    build_features_spark,
    training_cutoff,
)
from model_steps.raw_reader import read_raw
from model_steps.settings import data_settings, raw_guard_settings
from model_steps.spark_config import get_session, spark_conf

log = logging.getLogger(__name__)


def commit_table(
    df: Any, table_uri: str, n_files: int, manifest: dict[str, Any], labelled: bool
) -> dict[str, Any]:
    """Write ``df`` into a new attempt folder, commit it with its manifest, drop older attempts."""
    from pyspark.sql import functions as F

    attempt = f"attempt={lake.new_attempt_id()}"
    out_uri = lake.join(table_uri, attempt)
    (
        df.repartition(n_files, KEY)
        .sortWithinPartitions(KEY)
        .write.mode("overwrite")
        .parquet(lake.spark_uri(out_uri))
    )
    written = df.sparkSession.read.parquet(lake.spark_uri(out_uri))
    counts = [F.count(F.lit(1)).alias("rows")]
    if labelled:
        counts.append(F.sum(LABEL).alias("positives"))
    stats = written.agg(*counts).collect()[0]
    rows = int(stats["rows"])
    manifest = {**manifest, "rows": rows}
    if labelled:
        positives = int(stats["positives"] or 0)
        manifest.update(
            label=LABEL,
            label_positives=positives,
            label_rate=round(positives / rows, 6) if rows else None,
        )
    manifest.update(
        attempt=attempt,
        files=sorted(f for f in lake.list_files(out_uri) if f.endswith(".parquet")),
        committed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    lake.write_json_atomic(lake.join(table_uri, lake.MANIFEST), manifest)  # the commit point
    for d in lake.list_dirs(table_uri):  # a retry's older attempts are garbage now
        if d.startswith("attempt=") and d != attempt:
            lake.remove_tree(lake.join(table_uri, d))
    return manifest


def run(ctx: StepContext) -> dict[str, Any]:
    started = time.monotonic()
    cfg = data_settings(ctx.config)
    guards = raw_guard_settings(ctx.config)  # a bad setting fails before Spark starts
    lookback, window = cfg["lookback_days"], cfg["label_window_days"]
    cutoff = training_cutoff(ctx.data_date, window)
    spark = get_session(spark_conf(ctx.config, ctx.lake_uri, ctx.env))
    frames, report = read_raw(
        spark,
        ctx.lake_uri,
        ctx.customer,
        ctx.data_date,
        lookback_days=lookback,
        label_window_days=window,
        require_label_window=bool(cfg["require_label_window"]),
        guards=guards,
    )
    for w in report.warnings:
        log.warning("raw input: %s", w)

    n_files = max(1, -(-report.rows["diners"] // int(cfg["output_rows_per_file"])))
    common = {
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "run_id": ctx.run_id,
        "run_key": ctx.run_key,
        "data_date": ctx.data_date.isoformat(),
        "lookback_days": lookback,
        "label_window_days": window,
        "key": KEY,
        "raw": {"files": report.files, "rows": report.rows, "drop_days": report.days},
        "warnings": report.warnings,
    }
    tables = {}
    for table, as_of, labelled, schema in (
        (POPULATION, ctx.data_date, False, POPULATION_SCHEMA),
        ("features", cutoff, True, FEATURE_SCHEMA),
    ):
        df = build_features_spark(
            frames["diners"], frames["orders"], frames["email_events"], as_of,
            lookback_days=lookback, label_window_days=window, labelled=labelled,
        )  # fmt: skip
        tables[table] = commit_table(
            df,
            ctx.lake_path(table),
            n_files,
            {"table": table, **common, "cutoff_date": as_of.isoformat(), "schema": schema},
            labelled,
        )
    for df in frames.values():
        df.unpersist()
    spark.catalog.clearCache()

    training, population = tables["features"], tables[POPULATION]
    seconds = round(time.monotonic() - started, 1)
    log.info(
        "training table: %d diners at cutoff %s, label rate %s; population: %d diners at %s; "
        "%d raw order rows, %.1fs",
        training["rows"],
        cutoff,
        training["label_rate"],
        population["rows"],
        ctx.data_date,
        report.rows.get("orders", 0),
        seconds,
    )
    return {
        "features_uri": ctx.lake_path("features"),
        "manifest_uri": lake.join(ctx.lake_path("features"), lake.MANIFEST),
        "population_uri": ctx.lake_path(POPULATION),
        "cutoff_date": cutoff.isoformat(),
        "rows": training["rows"],
        "population_rows": population["rows"],
        "label_rate": training["label_rate"],
        "raw_rows": report.rows,
        "warnings": report.warnings,
        "status": "passed_with_warnings" if report.warnings else "passed",
        "seconds": seconds,
    }

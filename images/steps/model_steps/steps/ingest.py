"""Ingest step (PySpark): raw zone -> per-diner feature table for the cutoff (the data date).

Output, committed atomically (data first, manifest last)::

    <lake>/features/<pipeline>/customer=<tenant>/run=<run key>/attempt=<id>/part-*.parquet
    <lake>/features/<pipeline>/customer=<tenant>/run=<run key>/_MANIFEST.json
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from model_steps import lake
from model_steps.contract import StepContext
from model_steps.features import FEATURE_SCHEMA, KEY, LABEL, build_features_spark
from model_steps.raw_reader import read_raw
from model_steps.settings import data_settings
from model_steps.spark_config import get_session, spark_conf

log = logging.getLogger(__name__)


def run(ctx: StepContext) -> dict[str, Any]:
    from pyspark.sql import functions as F

    started = time.monotonic()
    cfg = data_settings(ctx.config)
    spark = get_session(spark_conf(ctx.config, ctx.lake_uri, ctx.env))
    frames, report = read_raw(
        spark,
        ctx.lake_uri,
        ctx.customer,
        ctx.data_date,
        lookback_days=cfg["lookback_days"],
        label_window_days=cfg["label_window_days"],
        require_label_window=bool(cfg["require_label_window"]),
    )
    for w in report.warnings:
        log.warning("raw input: %s", w)

    features = build_features_spark(
        frames["diners"],
        frames["orders"],
        frames["email_events"],
        ctx.data_date,
        lookback_days=cfg["lookback_days"],
        label_window_days=cfg["label_window_days"],
    )
    table_uri = ctx.lake_path("features")
    attempt = f"attempt={lake.new_attempt_id()}"
    out_uri = lake.join(table_uri, attempt)
    n_files = max(1, -(-report.rows["diners"] // int(cfg["output_rows_per_file"])))
    (
        features.repartition(n_files, KEY)
        .sortWithinPartitions(KEY)
        .write.mode("overwrite")
        .parquet(lake.spark_uri(out_uri))
    )

    written = spark.read.parquet(lake.spark_uri(out_uri))
    stats = written.agg(F.count(F.lit(1)).alias("rows"), F.sum(LABEL).alias("positives")).collect()[
        0
    ]
    rows, positives = int(stats["rows"]), int(stats["positives"] or 0)
    files = sorted(f for f in lake.list_files(out_uri) if f.endswith(".parquet"))
    for df in frames.values():
        df.unpersist()
    spark.catalog.clearCache()

    manifest = {
        "table": "features",
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "run_id": ctx.run_id,
        "run_key": ctx.run_key,
        "data_date": ctx.data_date.isoformat(),
        "lookback_days": cfg["lookback_days"],
        "label_window_days": cfg["label_window_days"],
        "key": KEY,
        "label": LABEL,
        "schema": FEATURE_SCHEMA,
        "rows": rows,
        "label_positives": positives,
        "label_rate": round(positives / rows, 6) if rows else None,
        "attempt": attempt,
        "files": files,
        "raw": {"files": report.files, "rows": report.rows, "drop_days": report.days},
        "warnings": report.warnings,
        "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    lake.write_json_atomic(lake.join(table_uri, lake.MANIFEST), manifest)  # the commit point
    for d in lake.list_dirs(table_uri):  # a retry's older attempts are garbage now
        if d.startswith("attempt=") and d != attempt:
            lake.remove_tree(lake.join(table_uri, d))
    seconds = round(time.monotonic() - started, 1)
    log.info(
        "features: %d diners, label rate %s, %d raw order rows, %.1fs",
        rows,
        manifest["label_rate"],
        report.rows.get("orders", 0),
        seconds,
    )
    return {
        "features_uri": table_uri,
        "manifest_uri": lake.join(table_uri, lake.MANIFEST),
        "rows": rows,
        "label_rate": manifest["label_rate"],
        "raw_rows": report.rows,
        "warnings": report.warnings,
        "status": "passed_with_warnings" if report.warnings else "passed",
        "seconds": seconds,
    }

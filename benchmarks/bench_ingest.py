"""Ingest throughput at growing sizes, Spark (the ingest step) against pandas/pyarrow (same features).

    .venv-steps/bin/python benchmarks/bench_ingest.py --quick     # one small size, ~1 minute
    .venv-steps/bin/python benchmarks/bench_ingest.py             # 100k, 1M, 5M order rows
    .venv-steps/bin/python benchmarks/bench_ingest.py --orders 1000000 --guards-off-too

For each size it generates the example raw zone (datagen, seed 7) in a scratch lake, then times
  * spark:  the ingest step body itself (``model_steps.steps.ingest.run``): file checks, the Spark
            row checks, both tables (training table and population), parquet writes and manifest
            commits, on one warm local SparkSession;
  * pandas: pyarrow CSV/JSON reading of the same files + ``build_features_pandas`` for the same two
            tables + parquet writes (no row-level checks: the "just compute it on one machine"
            baseline).
With ``--guards-off-too`` the Spark ingest also runs with ``raw_guards.enabled: false`` on the
same raw zone, right before the timed run with the guards on: the guards' cost as a ratio.
Prints a table and writes benchmarks/results/bench_ingest-<time>.json. Timings are measurements on
the machine it runs on, never test assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "images" / "steps"))

from mlmodels.customer_propensity import MODEL  # noqa: E402
from mlmodels.customer_propensity.features import build_features_pandas  # noqa: E402
from mlmodels.restaurant_chain import datagen  # noqa: E402
from model_steps.contract import StepContext  # noqa: E402
from model_steps.features import training_cutoff  # noqa: E402
from model_steps.raw_reader import plan_files, raw_plan  # noqa: E402
from model_steps.spark_config import get_session, spark_conf  # noqa: E402

TENANT = "bench-foods"
ORDERS_PER_DINER = 5.1  # what datagen produces over its history (measured)
DATA_DATE = datagen.DEFAULT_DATA_DATE  # the last drop day datagen writes
# the ingest step reads the model it runs from STEP_MODEL (as the control plane sets it)
STEP_ENV = {"STEP_MODEL": json.dumps({"ref": "mlmodels.customer_propensity", "task": MODEL.task})}


def pandas_ingest(
    lake_uri: str, out_dirs: dict[str, Path], lookback: int = 365, window: int = 14
) -> dict[str, int]:
    """The ingest step's tables named in ``out_dirs`` ("features": the training table,
    "population") written to their folders; returns their row counts."""
    plans = raw_plan(MODEL.raw_tables, DATA_DATE, lookback_days=lookback, label_window_days=window)
    frames = {}
    for name, (lo, hi) in plans.items():
        spec = MODEL.table[name]
        paths = [u[len("file://") :] for _, u in plan_files(lake_uri, TENANT, spec, lo, hi)]
        types = {
            c: {
                "string": pa.string(),
                "date": pa.date32(),
                "timestamp": pa.timestamp("s"),
                "double": pa.float64(),
                "int": pa.int32(),
            }[k]
            for c, k in spec.columns.items()
        }
        tables = []
        for p in paths:
            if os.path.getsize(p) == 0:
                continue
            if spec.fmt == "csv":
                tables.append(
                    pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(column_types=types))
                )
            else:
                tables.append(
                    pajson.read_json(
                        p,
                        parse_options=pajson.ParseOptions(
                            explicit_schema=pa.schema(list(types.items()))
                        ),
                    )
                )
        df = pa.concat_tables(tables).to_pandas()
        for c, k in spec.columns.items():
            if k in ("date", "timestamp"):
                df[c] = pd.to_datetime(df[c])
        frames[name] = df
    rows = {}
    for table, as_of, labelled in (
        ("population", DATA_DATE, False),
        ("features", training_cutoff(DATA_DATE, window), True),
    ):
        if table not in out_dirs:
            continue
        feats = build_features_pandas(
            frames["diners"], frames["orders"], frames["email_events"], as_of,
            lookback_days=lookback, label_window_days=window, labelled=labelled,
        )  # fmt: skip
        out_dirs[table].mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(feats, preserve_index=False), out_dirs[table] / "part-0.parquet"
        )
        rows[table] = len(feats)
    return rows


def _ctx(lake: Path, run_id: str) -> StepContext:
    return StepContext(
        step="ingest",
        pipeline="customer_propensity",
        customer=TENANT,
        run_id=run_id,
        data_date=DATA_DATE,
        config={},
        env={"LAKE_URI": f"file://{lake}", **STEP_ENV},
    )


def _start_spark(driver_memory: str, work: Path) -> tuple[Any, dict[str, str], float, float]:
    """(session, its conf, start seconds, warm-up seconds): one untimed ingest on a tiny raw zone
    first (JIT, class loading), so the sizes measure ingest, not a cold JVM."""
    spark_settings = {"master": "local[2]", "driver_memory": driver_memory, "shuffle_partitions": 8}
    conf = spark_conf({"data": {"spark": spark_settings}}, "file:///tmp")
    t0 = time.monotonic()
    spark = get_session(conf)
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.monotonic() - t0
    from model_steps.steps import ingest

    t = time.monotonic()
    warm = work / "lake-warmup"
    datagen.write_raw(datagen.generate(500, seed=1), f"file://{warm}", TENANT)
    ingest.run(_ctx(warm, "warmup"))
    shutil.rmtree(warm, ignore_errors=True)
    return spark, conf, startup, time.monotonic() - t


def _measure(target: int, work: Path, guards_off_too: bool) -> dict[str, Any]:
    """One size: generate its raw zone, time the Spark ingest (and with the guards off), then the
    pandas baseline on the same files; both must produce the same row counts."""
    from model_steps.steps import ingest

    lake = work / f"lake-{target}"
    shutil.rmtree(lake, ignore_errors=True)
    n_diners = max(200, int(target / ORDERS_PER_DINER))
    t = time.monotonic()
    tables = datagen.generate(n_diners, seed=7)
    datagen.write_raw(tables, f"file://{lake}", TENANT)
    gen_s = time.monotonic() - t
    raw_rows = {k: len(v) for k, v in tables.items()}
    del tables
    raw_bytes = sum(p.stat().st_size for p in (lake / "raw").rglob("*") if p.is_file())
    ctx = _ctx(lake, f"bench-{target}")
    off_s = None
    if guards_off_too:
        off = dataclasses.replace(ctx, config={"raw_guards": {"enabled": False}})
        t = time.monotonic()
        ingest.run(off)
        off_s = time.monotonic() - t
    t = time.monotonic()
    res = ingest.run(ctx).model_dump()  # the typed IngestResult, as the XCom carries it
    spark_s = time.monotonic() - t
    out_dirs = {n: work / f"pandas-{target}" / n for n in ("features", "population")}
    t = time.monotonic()
    n_pd = pandas_ingest(f"file://{lake}", out_dirs)
    pandas_s = time.monotonic() - t
    spark_rows = (res["rows"], res["population_rows"])
    assert (n_pd["features"], n_pd["population"]) == spark_rows, (n_pd, res)
    read_rows = sum(res["raw_rows"].values())
    print(f"done {target:>9,} order rows: spark {spark_s:.1f}s pandas {pandas_s:.1f}s", flush=True)
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(work / f"pandas-{target}", ignore_errors=True)
    return {
        "target_order_rows": target,
        "diners": n_diners,
        "generated_rows": raw_rows,
        "raw_mb": round(raw_bytes / 2**20, 1),
        "rows_read": read_rows,
        "order_rows_read": res["raw_rows"]["orders"],
        "feature_rows": res["rows"],
        "datagen_s": round(gen_s, 1),
        "spark_s": round(spark_s, 2),
        "pandas_s": round(pandas_s, 2),
        "spark_rows_per_s": round(read_rows / spark_s),
        "pandas_rows_per_s": round(read_rows / pandas_s),
        "spark_over_pandas_time": round(spark_s / pandas_s, 2),
        "spark_guards_off_s": None if off_s is None else round(off_s, 2),
        "guards_cost": None if off_s is None else round(spark_s / off_s - 1, 3),
    }


def _print_table(rows: list[dict[str, Any]], startup: float, warmup: float) -> None:
    hdr = ["order rows", "diners", "rows read", "raw MB", "spark s", "spark rows/s", "pandas s",
           "pandas rows/s", "spark/pandas time", "guards off s", "guards cost"]  # fmt: skip
    lines = [
        [
            f"{r['order_rows_read']:,}",
            f"{r['diners']:,}",
            f"{r['rows_read']:,}",
            f"{r['raw_mb']}",
            f"{r['spark_s']}",
            f"{r['spark_rows_per_s']:,}",
            f"{r['pandas_s']}",
            f"{r['pandas_rows_per_s']:,}",
            f"{r['spark_over_pandas_time']}x",
            "-" if r["spark_guards_off_s"] is None else f"{r['spark_guards_off_s']}",
            "-" if r["guards_cost"] is None else f"{r['guards_cost']:+.1%}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(hdr)]
    print(
        "\nIngest throughput (rows read = diners + orders + email events in the window; "
        f"Spark local[2]; session start {startup:.1f}s and a warm-up run {warmup:.1f}s not counted)"
    )
    print("  ".join(h.rjust(w) for h, w in zip(hdr, widths, strict=False)))
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=False)))


def _write_results(
    rows: list[dict[str, Any]], quick: bool, conf: dict[str, str], startup: float, warmup: float
) -> Path:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_ingest-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    kept = ("spark.master", "spark.driver.memory", "spark.sql.shuffle.partitions")
    path.write_text(
        json.dumps(
            {
                "benchmark": "ingest",
                "quick": quick,
                "spark_session_start_s": round(startup, 1),
                "spark_warmup_s": round(warmup, 1),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "spark_conf": {k: v for k, v in conf.items() if k in kept},
                "results": rows,
            },
            indent=2,
        )
    )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="one small size (20k order rows)")
    ap.add_argument("--orders", type=int, nargs="*", help="order-row sizes (default 100k 1M 5M)")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--driver-memory", default="6g")
    ap.add_argument(
        "--guards-off-too",
        action="store_true",
        help="also time the Spark ingest with raw_guards.enabled false (the guards' cost)",
    )
    args = ap.parse_args()
    sizes = args.orders or ([20_000] if args.quick else [100_000, 1_000_000, 5_000_000])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ingest-"))
    spark, conf, startup, warmup = _start_spark(args.driver_memory, work)
    try:
        rows = [_measure(target, work, args.guards_off_too) for target in sizes]
    finally:
        spark.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(rows, startup, warmup)
    path = _write_results(rows, args.quick, conf, startup, warmup)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

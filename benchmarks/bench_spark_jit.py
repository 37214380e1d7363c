"""The ingest step's wall time with a local driver's start-up settings (``data.spark.driver_jit``,
``data.spark.driver_class_archive``).

    .venv-steps/bin/python benchmarks/bench_spark_jit.py --quick    # tiny data, one pair of runs
    .venv-steps/bin/python benchmarks/bench_spark_jit.py            # tiny and small, three pairs

For each size it generates the example raw zone (datagen) in a scratch lake, then runs the ingest
step as the local runtime does (``python -m model_steps ingest``, a fresh process and JVM per run),
alternating ``quick`` (C1 only, serial GC, the class archive: the default), ``quick-no-archive``
and ``full`` (the JVM's tiered JIT) so that all see the same machine load. Each run's own log line
gives its start-up (the JVM) and work seconds. Prints a table with the medians and each mode's
ratio to quick, and writes benchmarks/results/bench_spark_jit-<time>.json. Timings are
measurements on the machine it runs on, never test assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_file  # noqa: E402

TENANT, PIPELINE, DATA_DATE = "acme-foods", "customer_propensity", "2026-06-29"
STEP_MODEL = json.dumps({"ref": "mlmodels.customer_propensity", "task": "binary_classification"})
DONE = re.compile(r"step ingest done in ([\d.]+)s: start-up ([\d.]+)s.*work ([\d.]+)s")
# quick (the default: C1, serial GC and the class archive make setup writes), quick without the
# archive, full (the JVM's tiered JIT)
MODES = ("quick", "quick-no-archive", "full")


def generate(lake: Path, size: str) -> None:
    command = [sys.executable, "-m", "mlmodels.restaurant_chain.datagen", "--customer", TENANT,
               "--lake", f"file://{lake}", "--size", size]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env=_env(lake, "quick"))


def _env(lake: Path, mode: str) -> dict[str, str]:
    jit, _, archive = mode.partition("-no-")
    config = {"data": {"spark": {"driver_jit": jit, "driver_class_archive": not archive}}}
    return {**os.environ, "PYTHONPATH": "", "LAKE_URI": f"file://{lake}", "STEP_MODEL": STEP_MODEL,
            "STEP_CONFIG": json.dumps(config), "STEP_XCOM_PATH": str(lake.parent / "xcom.json"),
            "MLFLOW_TRACKING_URI": f"file://{lake.parent}/mlruns"}  # fmt: skip


def ingest(lake: Path, mode: str) -> dict[str, float]:
    """One ingest step process; its own figures from its closing log line."""
    command = [sys.executable, "-m", "model_steps", "ingest", "--pipeline", PIPELINE,
               "--customer", TENANT, "--run-id", f"bench-{mode}", "--data-date", DATA_DATE]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(command, env=_env(lake, mode), capture_output=True, text=True)
    wall = time.monotonic() - started
    found = DONE.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"ingest ({mode}) failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"wall_s": round(wall, 1), "startup_s": float(found[2]), "work_s": float(found[3])}


def measure(size: str, pairs: int, work: Path) -> dict[str, Any]:
    lake = work / size / "lake"
    generate(lake, size)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for _ in range(pairs):
        for mode in MODES:
            runs[mode].append(ingest(lake, mode))
    medians = {m: {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]} for m in MODES}
    quick = medians["quick"]["wall_s"]
    ratios = {m: round(medians[m]["wall_s"] / quick, 2) for m in MODES}
    return {"size": size, "runs": runs, "median": medians, "over_quick": ratios}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'size':>6}  {'mode':>16}  {'wall s':>7}  {'start-up s':>10}  {'work s':>7}  ratio")
    for row in rows:
        for mode in MODES:
            m = row["median"][mode]
            print(f"{row['size']:>6}  {mode:>16}  {m['wall_s']:>7.1f}  {m['startup_s']:>10.1f}  "
                  f"{m['work_s']:>7.1f}  {row['over_quick'][mode]:.2f}x")  # fmt: skip
    print("(medians; ratio = the mode's wall time over quick's, the modes alternating in one run)")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny data, one pair of runs")
    ap.add_argument("--pairs", type=int, default=None, help="runs per mode (default 3)")
    args = ap.parse_args()
    sizes, pairs = (["tiny"], 1) if args.quick else (["tiny", "small"], 3)
    pairs = args.pairs or pairs
    work = Path(tempfile.mkdtemp(prefix="bench-spark-jit-"))
    try:
        rows = [measure(size, pairs, work) for size in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results_file.write(
        ROOT / "benchmarks" / "results" / f"bench_spark_jit-{stamp}.json",
        {"benchmark": "bench_spark_jit", "machine": platform.node(), "cpus": os.cpu_count(),
         "pairs": pairs, "rows": rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

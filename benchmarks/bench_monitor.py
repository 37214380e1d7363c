"""Outcome monitoring at scale: the monitor step's join and figures (Arrow) against a pandas join
of the same tables feeding the same figures, in one run.

    .venv-steps/bin/python benchmarks/bench_monitor.py [--rows 1000000] [--quick]

Tables, written once in the lake's layout: a committed scores table of ``rows`` diners, the
outcomes of the label window (what the model's label hook returns: a third of the diners, as
Arrow), and the campaign's arms (the top 20%, a tenth held out). Each case runs in a fresh
process so its peak RSS is its own: the step's ``monitor.joined`` + ``monitor.figures`` vs
``pandas.merge`` (left, left) + the same ``monitoring`` figures. Spark's label hook is not timed:
it is the same for both. Prints a table and writes benchmarks/results/monitor.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import results_file

REPO = Path(__file__).resolve().parents[1]
CASES = ("step", "pandas")


def write_tables(root: Path, rows: int, seed: int = 3) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model_steps import lake

    rng = np.random.default_rng(seed)
    keys = np.char.add("D", np.char.zfill(np.arange(rows).astype(str), 9))
    score = rng.random(rows)
    files = max(1, rows // 250_000)
    parts = [
        pa.table({"diner_id": keys[i], "score": score[i], "model_version": ["3"] * len(i)})
        for i in np.array_split(np.arange(rows), files)
    ]
    lake.commit_parquet_table(f"file://{root}/scores", parts, {"data_date": "2026-06-29"})
    converted = rng.random(rows) < score * 0.66  # outcomes follow the scores
    pq.write_table(
        pa.table({"diner_id": keys[converted], "outcome": np.ones(converted.sum())}),
        root / "outcomes.parquet",
    )
    top = np.argsort(-score)[: rows // 5]
    arms = np.where(rng.random(top.size) < 0.1, "control", "treated")
    lake.commit_parquet_table(
        f"file://{root}/campaign/bench/customer=acme-foods/run=r1",
        [pa.table({"diner_id": keys[top], "arm": arms})],
    )


def run_case(case: str, root: Path) -> dict[str, float]:
    import pyarrow.parquet as pq

    from mlmodels.customer_propensity import MODEL
    from mlplatform_contract.settings import CustomerSettings
    from model_steps import lake, monitoring
    from model_steps.contract import StepContext
    from model_steps.steps import monitor

    loaded = types.SimpleNamespace(model=MODEL, platform=CustomerSettings())
    run = monitor.ScoredRun("r1", dt.date(2026, 6, 29), f"file://{root}/scores", {})
    ctx = StepContext(step="monitor", pipeline="bench", customer="acme-foods", run_id="m",
                      data_date=dt.date(2026, 7, 27), env={"LAKE_URI": f"file://{root}"})  # fmt: skip
    settings = loaded.platform.monitoring
    t0 = time.perf_counter()
    observed = pq.read_table(root / "outcomes.parquet")
    if case == "step":
        result = monitor.figures(loaded, run, monitor.joined(loaded, run, observed, ctx))
        figures = {"realized": result.realized, "uplift": result.uplift}
    else:
        scores, _ = lake.read_parquet_table(run.scores_uri, columns=["diner_id", "score"])
        arms, _ = lake.read_parquet_table(ctx.run_path("campaign", "r1"))
        frame = (
            scores.to_pandas()
            .merge(observed.to_pandas(), on="diner_id", how="left")
            .merge(arms.to_pandas(), on="diner_id", how="left")
            .sort_values("diner_id", kind="stable")
        )
        y = frame["outcome"].fillna(0.0).to_numpy()
        p = frame["score"].to_numpy()
        figures = {
            "realized": monitoring.realized(MODEL.task, y, p),
            "uplift": monitoring.uplift(
                y[(frame["arm"] == "treated").to_numpy()],
                y[(frame["arm"] == "control").to_numpy()],
                min_arm=settings.min_arm_size,
                confidence=settings.confidence,
                positive_outcome=MODEL.positive_outcome,
            ),
        }
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1),
            "roc_auc": figures["realized"]["roc_auc"],
            "uplift": figures["uplift"].get("difference")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100k rows")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "monitor.json"
    )
    args = parser.parse_args()
    if args.case:  # a child: one case, its figures as JSON
        print(json.dumps(run_case(args.case, args.dir)))
        return 0
    rows = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        write_tables(Path(tmp), rows)
        cases = {}
        for case in CASES:
            out = subprocess.run(
                [sys.executable, __file__, "--case", case, "--dir", tmp],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            cases[case] = json.loads(out.stdout.strip().splitlines()[-1])
    step, base = cases["step"], cases["pandas"]
    assert step["roc_auc"] == base["roc_auc"] and step["uplift"] == base["uplift"], cases
    result = {
        "benchmark": "monitor", "rows": rows, **{f"{c}_{k}": v for c, r in cases.items()
                                                  for k, v in r.items()},
        "speedup_vs_pandas": round(base["seconds"] / step["seconds"], 2),
        "peak_rss_ratio_vs_pandas": round(step["peak_rss_mb"] / base["peak_rss_mb"], 2),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }  # fmt: skip
    print(f"Monitoring {rows:,} scored rows joined with outcomes and campaign arms")
    print(f"{'path':<36}{'seconds':>10}{'peak RSS MB':>14}")
    print(f"{'monitor step (Arrow join + figures)':<36}{step['seconds']:>10.2f}"
          f"{step['peak_rss_mb']:>14.0f}")  # fmt: skip
    print(f"{'pandas merge + the same figures':<36}{base['seconds']:>10.2f}"
          f"{base['peak_rss_mb']:>14.0f}")  # fmt: skip
    print(f"step is {result['speedup_vs_pandas']}x as fast, at "
          f"{result['peak_rss_ratio_vs_pandas']}x the peak memory")  # fmt: skip
    results_file.write(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

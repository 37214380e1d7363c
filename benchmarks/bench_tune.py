"""Tuning: 8 trials of customer_propensity on the example data, parallel_trials 1 vs 2, and the
tuned model's holdout metric against the untuned default.

    .venv-steps/bin/python benchmarks/bench_tune.py --quick   # 4,000 diners
    .venv-steps/bin/python benchmarks/bench_tune.py           # 20,000 diners (datagen "medium")

1. Data: datagen's raw zone (seed 7), the pandas features of benchmarks/bench_ingest.py committed
   as the run's feature table (bench_train.commit_table), one copy per run id.
2. Untuned: the train step with the example module's settings (dags/customer_propensity.py
   defaults), 1 rank: its holdout ROC-AUC is the default's.
3. Tuned, for parallel_trials 1 and 2 (random search, 8 trials) and 2 with successive halving: the
   stage's steps through their command line as the mapped tasks run them (tune, then the trials
   ``parallel_trials`` at a time, 1 rank each, [halve, the kept trials], select), then the final
   train with the best trial's parameters. Wall time of the stage (tune..select) and of the final
   train; the final model's holdout ROC-AUC (the holdout no trial saw).

Prints a table and writes benchmarks/results/bench_tune-<time>.json. Measurements of the machine it
runs on (2 CPU cores here, no GPU), never test assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "images" / "steps"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ingest import TENANT  # noqa: E402
from bench_train import PIPELINE, STEP_MODEL, commit_table  # noqa: E402

from embedded import services  # noqa: E402
from mlmodels.restaurant_chain import datagen  # noqa: E402
from model_steps import lake  # noqa: E402
from model_steps.contract import run_key  # noqa: E402

BIN = Path(sys.executable).parent
# the example module's settings (dags/customer_propensity.py defaults): the untuned default
DEFAULTS = {
    "training": {"epochs": 10, "batch_size": 256, "learning_rate": 0.003},
    "model": {"hidden_units": [128, 64], "top_fraction": 0.2},
}
CASES = [(1, False), (2, False), (2, True)]  # (parallel_trials, halving)


def step(name: str, run_id: str, lake_root: Path, env_extra: dict, config: dict, tmp: Path,
         trial: dict | None = None) -> dict:  # fmt: skip
    label = f"{run_key(run_id)}-{name}-{trial['name']}-{trial['rung']}" if trial else name
    xcom = tmp / f"{run_key(run_id)}-{label}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.pop("PYTHONPATH", None)
    env |= env_extra | {
        "LAKE_URI": f"file://{lake_root}", "STEP_XCOM_PATH": str(xcom),
        "STEP_CONFIG": json.dumps(config), "STEP_MODEL": STEP_MODEL,
        "STEP_TRIAL": json.dumps(trial) if trial else "", "PATH": f"{BIN}:{env.get('PATH', '')}",
    }  # fmt: skip
    argv = [str(BIN / "python"), "-m", "model_steps", name, "--pipeline", PIPELINE,
            "--customer", TENANT, "--run-id", run_id,
            "--data-date", datagen.DEFAULT_DATA_DATE.isoformat()]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}")
    return json.loads(xcom.read_text())


def tuned(parallel: int, halving: bool, run_id: str, lake_root: Path, env: dict, tmp: Path,
          trials: int) -> dict:  # fmt: skip
    budget = {"enabled": True, "trials": trials, "parallel_trials": parallel,
              "halving": {"enabled": halving}}  # fmt: skip
    config = {**DEFAULTS, "tuning": budget}
    started = time.monotonic()
    planned = step("tune", run_id, lake_root, env, config, tmp)

    def rung(entries: dict) -> list[dict]:
        with ThreadPoolExecutor(parallel) as pool:  # what max_active_tis_per_dagrun allows
            return list(pool.map(lambda t: step("trial", run_id, lake_root, env, config, tmp, t),
                                 entries.values()))  # fmt: skip

    results = rung(planned)
    if halving:
        results += rung(step("halve", run_id, lake_root, env, config, tmp))
    selected = step("select", run_id, lake_root, env, config, tmp)
    stage = time.monotonic() - started
    train = step("train", run_id, lake_root, env, config, tmp)
    return {
        "parallel_trials": parallel, "halving": halving, "trials": trials,
        "stage_wall_seconds": round(stage, 1),
        "final_train_wall_seconds": round(time.monotonic() - started - stage, 1),
        "trial_epochs_trained": sum(r["epochs"] - r["start_epoch"] for r in results),
        "best_trial": selected["trial"], "best_params": selected["params"],
        "best_validation_roc_auc": round(selected["value"], 4),
        "holdout_roc_auc": train["metrics"]["roc_auc"],
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4,000 diners")
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    diners = datagen.SIZES["small"] if args.quick else datagen.SIZES["medium"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    report: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "platform": platform.platform(), "gpu": "none"},
                    "diners": diners, "defaults": DEFAULTS}  # fmt: skip
    try:
        lake_root = tmp / "lake"
        datagen.write_raw(datagen.generate(diners, seed=7), f"file://{lake_root}", TENANT)
        base = lake.local_path(commit_table(lake_root, "bench-untuned"))
        run_ids = [f"bench-p{p}{'-halving' if h else ''}" for p, h in CASES]
        for run_id in run_ids:
            shutil.copytree(base, base.replace(run_key("bench-untuned"), run_key(run_id)))
        info = services.up(tmp / "services", timeout=180)
        try:
            print("untuned default…", flush=True)
            t0 = time.monotonic()
            untuned = step("train", "bench-untuned", lake_root, info["env"], DEFAULTS, tmp)
            report["untuned"] = {"holdout_roc_auc": untuned["metrics"]["roc_auc"],
                                 "wall_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
            print(json.dumps(report["untuned"]), flush=True)
            report["tuned"] = []
            for (parallel, halving), run_id in zip(CASES, run_ids, strict=True):
                print(f"tuning, parallel_trials {parallel}, halving {halving}…", flush=True)
                report["tuned"].append(
                    tuned(parallel, halving, run_id, lake_root, info["env"], tmp, args.trials)
                )
                print(json.dumps(report["tuned"][-1]), flush=True)
        finally:
            services.down(tmp / "services")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _print(report)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_tune-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")
    return 0


def _print(report: dict) -> None:
    print(f"\ncustomer_propensity, {report['diners']} diners, CPU only, 1 rank per trial")
    print(f"{'case':<28} {'stage s':>8} {'train s':>8} {'trial epochs':>12} {'val AUC':>8} "
          f"{'holdout AUC':>11}  best")  # fmt: skip
    u = report["untuned"]
    print(f"{'untuned default':<28} {'-':>8} {u['wall_seconds']:>8} {'-':>12} {'-':>8} "
          f"{u['holdout_roc_auc']:>11.4f}")  # fmt: skip
    for r in report["tuned"]:
        case = f"{r['trials']} trials, parallel {r['parallel_trials']}" + (
            ", halving" if r["halving"] else ""
        )
        print(f"{case:<28} {r['stage_wall_seconds']:>8} {r['final_train_wall_seconds']:>8} "
              f"{r['trial_epochs_trained']:>12} {r['best_validation_roc_auc']:>8.4f} "
              f"{r['holdout_roc_auc']:>11.4f}  {r['best_trial']} {json.dumps(r['best_params'])}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

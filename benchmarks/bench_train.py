"""Training throughput: the train step at 1 and 2 Horovod ranks on CPU, and whether it is input-bound.

    .venv-steps/bin/python benchmarks/bench_train.py --quick   # 20k diners, 3 epochs, ~2 minutes
    .venv-steps/bin/python benchmarks/bench_train.py           # 200k diners, 5 epochs

1. Data: datagen's raw zone (seed 7), features with the pandas baseline of the ingest step
   (benchmarks/bench_ingest.py; same definitions, no Spark start-up), committed as a feature table.
2. The train step through its command line, exactly as the local runtime runs it
   (``python -m model_steps train`` for 1 rank, ``horovodrun -np 2 -H localhost:2 --gloo …`` for 2,
   horovodrun as ``python -m model_steps.horovod_launch``)
   against the embedded MLflow server; epoch time and samples/s come from the step's result (median
   over epochs after the first, which includes tracing; an epoch includes its validation pass).
   Scaling ratio = samples/s at 2 ranks / samples/s at 1 rank (2.0 would be linear).
3. In this process (one rank, all cores): the tf.data input pipeline alone (iterate batches, no
   model) against the training step alone (fit on batches already in memory), same batch size.
   Input-bound when the pipeline cannot deliver batches as fast as the step consumes them.

Prints a table and writes benchmarks/results/bench_train-<time>.json. Measurements of the machine it
runs on (this one: 2 CPU cores, no GPU), never test assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "images" / "steps"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pyarrow.parquet as pq  # noqa: E402
from bench_ingest import TENANT, pandas_ingest  # noqa: E402

from embedded import services  # noqa: E402
from mlmodels.customer_propensity import MODEL  # noqa: E402
from mlmodels.restaurant_chain import datagen  # noqa: E402
from mlplatform_contract.settings import CustomerSettings, TrainingSettings  # noqa: E402
from mlplatform_contract.steps import HOROVOD_LAUNCHER  # noqa: E402
from model_steps import lake  # noqa: E402
from model_steps.contract import run_key  # noqa: E402
from model_steps.model_api import ModelContext  # noqa: E402

TRAINING_DEFAULTS = TrainingSettings().model_dump()  # the platform's defaults, one definition
STEP_MODEL = json.dumps({"ref": "mlmodels.customer_propensity", "task": MODEL.task})

PIPELINE = "customer_propensity"
BIN = Path(sys.executable).parent


def commit_table(lake_root: Path, run_id: str) -> str:
    """Raw zone -> pandas features -> a committed feature table (attempt folder + manifest)."""
    table = lake_root / "features" / PIPELINE / f"customer={TENANT}" / f"run={run_key(run_id)}"
    rows = pandas_ingest(f"file://{lake_root}", {"features": table / "attempt=bench"})["features"]
    lake.write_json_atomic(
        f"file://{table}/_MANIFEST.json",
        {"attempt": "attempt=bench", "files": ["part-0.parquet"], "rows": rows},
    )
    return f"file://{table}"


def run_step(
    ranks: int, run_id: str, lake_root: Path, env_extra: dict, training: dict, tmp: Path
) -> dict:
    xcom = tmp / f"result-{ranks}.json"
    step = ["-m", "model_steps", "train", "--pipeline", PIPELINE, "--customer", TENANT,
            "--run-id", run_id, "--data-date", datagen.DEFAULT_DATA_DATE.isoformat()]  # fmt: skip
    launcher = ["-m", HOROVOD_LAUNCHER, "-np", str(ranks), "-H", f"localhost:{ranks}",
                "--gloo", str(BIN / "python")]  # fmt: skip
    cmd = [str(BIN / "python"), *([] if ranks == 1 else launcher), *step]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.pop("PYTHONPATH", None)
    env |= env_extra | {
        "LAKE_URI": f"file://{lake_root}",
        "STEP_XCOM_PATH": str(xcom),
        "STEP_CONFIG": json.dumps({"training": training}),
        "STEP_MODEL": STEP_MODEL,
        "PATH": f"{BIN}:{env.get('PATH', '')}",
    }
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(
            f"train at {ranks} rank(s) failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
        )
    res = json.loads(xcom.read_text())
    later = slice(1, None) if len(res["epoch_seconds"]) > 1 else slice(None)
    return {
        "ranks": ranks,
        "wall_seconds": round(time.monotonic() - started, 1),
        "fit_seconds": res["fit_seconds"],
        "epoch_seconds_median": round(statistics.median(res["epoch_seconds"][later]), 3),
        "samples_per_second_median": round(statistics.median(res["samples_per_second"][later]), 1),
        "epoch_seconds": res["epoch_seconds"],
        "steps_per_epoch": res["steps_per_epoch"],
        "global_batch_size": res["global_batch_size"],
        "holdout_roc_auc": res["metrics"]["roc_auc"],
        "rows_train": res["rows_train"],
    }


def _compiled_model(shard: Any, training: dict) -> Any:
    """The model the train step builds for this shard (its normalization from the shard's
    moments), compiled as the step compiles it: what the step-only rate is measured on."""
    import tensorflow as tf

    from model_steps.training import build_model, moments_to_stats, numeric_moments

    mean, var = moments_to_stats(numeric_moments(shard, MODEL.numeric_features))
    platform_settings = CustomerSettings.model_validate({"training": training})
    ctx = ModelContext(
        pipeline=PIPELINE, customer=TENANT, data_date=datagen.DEFAULT_DATA_DATE, lake_uri="",
        settings=MODEL.settings(), platform=platform_settings,
    )  # fmt: skip
    model = build_model(MODEL, ctx, mean, var)
    model.compile(
        optimizer=tf.keras.optimizers.legacy.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc")],
    )
    return model


def input_vs_step(table_uri: str, training: dict, epochs: int) -> dict:
    """One process: the input pipeline alone vs the training step alone, samples/s."""
    from model_steps.training import make_dataset, read_shard

    bs = training["batch_size"]
    t0 = time.monotonic()
    shard = read_shard(
        table_uri,
        MODEL,
        split="train",
        rank=0,
        size=1,
        holdout_fraction=training["holdout_fraction"],
        seed=training["seed"],
    )
    read_s = time.monotonic() - t0
    steps = max(1, shard.rows // bs)
    ds = make_dataset(shard, MODEL, batch_size=bs, shuffle=True, seed=1, repeat=True)
    for _ in ds.take(steps):  # warm-up: tracing, first shuffle buffer fill
        pass
    t0 = time.monotonic()
    n = 0
    for _, y in ds.take(steps * epochs):
        n += int(y.shape[0])
    pipe = n / (time.monotonic() - t0)

    model = _compiled_model(shard, training)
    # the step with no input cost: the same batches, materialized once by cache()
    mem = ds.take(steps).cache().repeat()
    model.fit(mem, steps_per_epoch=steps, epochs=1, verbose=0)  # tracing, fills the cache
    t0 = time.monotonic()
    model.fit(mem, steps_per_epoch=steps, epochs=epochs, verbose=0)
    step_only = steps * bs * epochs / (time.monotonic() - t0)
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # tracing for this input's spec
    t0 = time.monotonic()
    model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0)
    fed = steps * bs * epochs / (time.monotonic() - t0)
    return {
        "parquet_read_seconds": round(read_s, 3),
        "rows": shard.rows,
        "input_pipeline_samples_per_second": round(pipe, 1),
        "train_step_samples_per_second": round(step_only, 1),
        "train_with_pipeline_samples_per_second": round(fed, 1),
        "input_to_step_ratio": round(pipe / step_only, 2),
        "input_bound": bool(pipe < 1.2 * step_only),
    }


def _training_tables(lake_root: Path, diners: int, report: dict) -> str:
    """The example raw zone ingested once into the training table of run bench-np1, copied for
    bench-np2 (each run reads its own run's table); the data's time and rows go in the report."""
    t0 = time.monotonic()
    datagen.write_raw(datagen.generate(diners, seed=7), f"file://{lake_root}", TENANT)
    base = commit_table(lake_root, "bench-np1")
    shutil.copytree(
        lake.local_path(base),
        lake.local_path(base).replace(run_key("bench-np1"), run_key("bench-np2")),
    )
    report["data_seconds"] = round(time.monotonic() - t0, 1)
    report["table_rows"] = pq.read_metadata(
        lake.local_path(base) + "/attempt=bench/part-0.parquet"
    ).num_rows
    return base


def _print_report(report: dict, training: dict) -> None:
    """The runs' table, the scaling ratio and whether training is input-bound."""
    runs, epochs = report["runs"], training["epochs"]
    print(
        f"\ntrain step on {report['table_rows']} diners ({runs[0]['rows_train']} training rows), "
        f"batch {training['batch_size']}/rank, {epochs} epochs, CPU only"
    )
    print(
        f"{'ranks':>5} {'global batch':>12} {'steps/epoch':>11} {'epoch s (med)':>13} "
        f"{'samples/s (med)':>15} {'fit s':>7} {'wall s':>7} {'holdout AUC':>11}"
    )
    for r in runs:
        print(
            f"{r['ranks']:>5} {r['global_batch_size']:>12} {r['steps_per_epoch']:>11} "
            f"{r['epoch_seconds_median']:>13} {r['samples_per_second_median']:>15} "
            f"{r['fit_seconds']:>7} {r['wall_seconds']:>7} {r['holdout_roc_auc']:>11}"
        )
    print(f"scaling ratio (samples/s, 2 ranks / 1 rank): {report['scaling_ratio_2_vs_1']}")
    iv = report["input_vs_step"]
    print(
        f"input pipeline alone: {iv['input_pipeline_samples_per_second']:.0f} samples/s; "
        f"training step alone: {iv['train_step_samples_per_second']:.0f} samples/s; "
        f"step fed by the pipeline: {iv['train_with_pipeline_samples_per_second']:.0f} samples/s "
        f"-> {'input-bound' if iv['input_bound'] else 'not input-bound'} "
        f"(pipeline/step = {iv['input_to_step_ratio']})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k diners, 3 epochs")
    ap.add_argument("--diners", type=int)
    ap.add_argument("--epochs", type=int)
    args = ap.parse_args()
    diners = args.diners or (datagen.SIZES["medium"] if args.quick else datagen.SIZES["large"])
    epochs = args.epochs or (3 if args.quick else 5)
    training = {**TRAINING_DEFAULTS, "epochs": epochs}
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    report: dict = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "gpu": "none",
        },
        "diners": diners,
        "training": training,
    }
    try:
        lake_root = tmp / "lake"
        base = _training_tables(lake_root, diners, report)
        print(
            f"data: {report['table_rows']} rows in {report['data_seconds']}s; starting services",
            flush=True,
        )
        info = services.up(tmp / "services", timeout=180)
        try:
            runs = []
            for ranks in (1, 2):
                print(f"train step at {ranks} rank(s)…", flush=True)
                runs.append(
                    run_step(ranks, f"bench-np{ranks}", lake_root, info["env"], training, tmp)
                )
        finally:
            services.down(tmp / "services")
        report["runs"] = runs
        report["scaling_ratio_2_vs_1"] = round(
            runs[1]["samples_per_second_median"] / runs[0]["samples_per_second_median"], 2
        )
        print("input pipeline vs training step…", flush=True)
        report["input_vs_step"] = input_vs_step(base, training, max(epochs, 30))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    _print_report(report, training)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_train-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

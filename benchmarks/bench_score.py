"""Batch scoring throughput: the score step's chunked path (parquet read, predict, parquet write,
manifest commit) against the model's raw in-memory predict on the same rows, in one run.

    .venv-steps/bin/python benchmarks/bench_score.py [--rows 1000000] [--quick]

The model is the platform's own served form (model_steps.model_store + serving.KerasPredictor
around customer_propensity's network on the platform's inputs, training.build_model); its weights are
untrained, which does not change the work per row. Prints a table and writes
benchmarks/results/score.json. Target: step >= 0.8x raw predict.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import results_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "images" / "steps"))

from mlmodels.customer_propensity import MODEL  # noqa: E402
from mlplatform_contract.settings import CustomerSettings  # noqa: E402
from model_steps import lake  # noqa: E402
from model_steps.model_api import ModelContext  # noqa: E402
from model_steps.steps.score import score_table  # noqa: E402
from model_steps.training import build_model  # noqa: E402

KEY, CATEGORICAL = MODEL.key, MODEL.categorical_features
INPUT_COLUMNS = MODEL.input_columns

TARGET = 0.8


def feature_table(root: Path, rows: int, files: int, seed: int = 1) -> str:
    """A committed feature table (parts + manifest, the lake's protocol) of random rows."""
    rng = np.random.default_rng(seed)
    uri = f"file://{root}/features"
    attempt = "attempt=bench"
    names = []
    for i, idx in enumerate(np.array_split(np.arange(rows), files)):
        data: dict[str, object] = {KEY: [f"D{j:09d}" for j in idx]}
        for col, kind in MODEL.feature_schema.items():
            if col in CATEGORICAL or kind == "date":
                continue
            data[col] = rng.integers(0, 50, len(idx)) if kind == "int" else rng.random(len(idx))
        for col, vocab in CATEGORICAL.items():
            data[col] = rng.choice(list(vocab), len(idx))
        name = f"part-{i:05d}.parquet"
        path = root / "features" / attempt / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(data), path)
        names.append(name)
    lake.write_json_atomic(
        f"{uri}/_MANIFEST.json", {"attempt": attempt, "files": names, "rows": rows}
    )
    return uri


def platform_model(root: Path):  # type: ignore[no-untyped-def]
    """Saved as the train step saves (model_store: the Keras format, manifest, digest) and loaded
    as score loads (verified, safe mode, the image's wrapper)."""
    from model_steps import model_store
    from model_steps.serving import io_spec

    n = len(MODEL.numeric_features)
    ctx = ModelContext(
        pipeline=MODEL.name, customer="bench", data_date=None, lake_uri="",  # type: ignore[arg-type]
        settings=MODEL.settings(hidden_units=(128, 64), dropout=0.1), platform=CustomerSettings(),
    )  # fmt: skip
    keras = build_model(MODEL, ctx, np.zeros(n), np.ones(n))
    manifest = model_store.save(
        root / "model", keras, fmt=model_store.KERAS.name, model=MODEL.name, task=MODEL.task,
        io=model_store.IoSpec(**io_spec(MODEL)),
    )  # fmt: skip
    return model_store.load_dir(root / "model", manifest.digest, "benchmark model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="100k rows")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "score.json")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        root = Path(tmp)
        features = feature_table(root, rows, files=max(1, rows // 250_000))
        model = platform_model(root)
        model.predict(
            pd.read_parquet(root / "features" / "attempt=bench")[list(INPUT_COLUMNS)].head(1000)
        )

        frame = pd.concat(
            [pd.read_parquet(p) for p in sorted((root / "features" / "attempt=bench").glob("*.parquet"))]
        )[list(INPUT_COLUMNS)]  # fmt: skip
        t0 = time.perf_counter()
        for start in range(0, rows, args.chunk_rows):
            model.predict(frame.iloc[start : start + args.chunk_rows])
        raw_s = time.perf_counter() - t0

        done = score_table(model, MODEL, features, f"file://{root}/scores",
                           chunk_rows=args.chunk_rows, model_version="bench")  # fmt: skip
    step_s = done["seconds"]
    result = {
        "benchmark": "score", "rows": rows, "chunk_rows": args.chunk_rows,
        "raw_predict_rows_per_s": round(rows / raw_s), "step_rows_per_s": round(rows / step_s),
        "raw_predict_s": round(raw_s, 2), "step_s": round(step_s, 2),
        "step_predict_s": round(done["predict_seconds"], 2),
        "ratio_step_vs_raw": round(raw_s / step_s, 3), "target": TARGET,
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }  # fmt: skip
    print(
        f"Batch scoring, {rows:,} rows, chunks of {args.chunk_rows:,} (target step >= {TARGET}x raw)"
    )
    print(f"{'path':<34}{'seconds':>10}{'rows/s':>12}")
    print(f"{'raw in-memory predict':<34}{raw_s:>10.2f}{rows / raw_s:>12,.0f}")
    print(f"{'score step (read+predict+write)':<34}{step_s:>10.2f}{rows / step_s:>12,.0f}")
    verdict = "meets" if result["ratio_step_vs_raw"] >= TARGET else "MISSES"
    print(f"ratio {result['ratio_step_vs_raw']}x: {verdict} the target")
    results_file.write(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

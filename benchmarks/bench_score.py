"""Batch scoring throughput per framework: the platform's served model (its interface:
``FramePredictor.predict`` on the in-memory chunks) and the score step's chunked path (parquet
read, the served model, parquet write, manifest commit), each against the framework's own predict
on the same rows held in memory, alternated in one run (``--repeat`` rounds; medians reported).

    .venv-steps/bin/python benchmarks/bench_score.py [--rows 1000000] [--quick] [--framework keras]

The baseline is the framework's own predict on each in-memory chunk of the frame a user holds
(``pd.read_parquet``: strings as Python objects), with the least conversion that framework needs and
no platform code; no parquet, no output frame, no write:

* keras: customer_propensity's network (training.build_model, untrained weights: the work per row
  is the same), saved and loaded as the platform does (model_store + serving.KerasPredictor); the
  baseline is Keras's ``Model.predict(inputs, batch_size=8192)`` on the network's inputs (numeric
  columns as one float32 matrix, each categorical column's values as they are).
* lightgbm: preferred_channel's inputs, a 5-class booster of 50 trees fitted on random rows, saved
  and loaded in LightGBM's text format (serving.LightGBMPredictor); the baseline is LightGBM's own
  ``Booster.predict`` on the chunk with its categoricals as pandas categories (``astype``).
* xgboost: the same inputs and classes, a booster of 50 trees (``multi:softprob``, categoricals
  native), saved and loaded in XGBoost's JSON format (serving.XGBoostPredictor); the baseline is
  XGBoost's own ``Booster.inplace_predict`` on the chunk converted by serving.tabular_frame.
* sklearn: the same inputs and classes, a HistGradientBoostingClassifier of 50 iterations, saved
  and loaded through skops (serving.SklearnPredictor); the baseline is its ``predict_proba`` on
  the chunk converted by serving.tabular_frame.
* pytorch: the same inputs and classes, an MLP (an embedding per categorical, two hidden layers of
  64; untrained: the work per row is the same), saved and loaded as safetensors weights into the
  module the model's code builds (serving.TorchPredictor); the baseline is the module's own
  forward under ``torch.inference_mode`` in batches of 8192 rows and a softmax, on the numeric
  columns as one float32 matrix and each categorical coded by its vocabulary's
  ``pd.Index.get_indexer`` (-1 -> the vocabulary's length; ``pd.Categorical(values,
  categories)`` takes about twice as long on the object strings).

Each path is called once off the clock first (Keras traces its function). Prints a table and
writes benchmarks/results/score.json. Goal: >= 0.95x the baseline (the served model; the step too).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import results_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "images" / "steps"))

from mlmodels.customer_propensity import MODEL as KERAS_MODEL  # noqa: E402
from mlmodels.preferred_channel import MODEL as LIGHTGBM_MODEL  # noqa: E402
from mlplatform_contract.settings import CustomerSettings  # noqa: E402
from model_steps import lake  # noqa: E402
from model_steps.model_api import ModelContext  # noqa: E402
from model_steps.steps.score import score_table  # noqa: E402
from model_steps.training import build_model  # noqa: E402

TARGET = 0.95
FRAMEWORKS = ("keras", "lightgbm", "xgboost", "sklearn", "pytorch")


def feature_table(root: Path, model: Any, rows: int, files: int, seed: int = 1) -> str:
    """A committed feature table (parts + manifest, the lake's protocol) of random rows."""
    rng = np.random.default_rng(seed)
    key, categorical = model.key, model.categorical_features
    uri = f"file://{root}/features"
    attempt = "attempt=bench"
    names = []
    for i, idx in enumerate(np.array_split(np.arange(rows), files)):
        data: dict[str, object] = {key: [f"D{j:09d}" for j in idx]}
        for col, kind in model.feature_schema.items():
            if col in categorical or kind == "date":
                continue
            data[col] = rng.integers(0, 50, len(idx)) if kind == "int" else rng.random(len(idx))
        for col, vocab in categorical.items():
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


def keras_model(root: Path) -> tuple[Any, Callable[[pd.DataFrame], Any]]:
    """Saved as the train step saves (model_store: the Keras format, manifest, digest) and loaded
    as score loads (verified, safe mode, the image's wrapper); the baseline is Keras's predict on
    the loaded network."""
    from model_steps import model_store

    model = KERAS_MODEL
    n = len(model.numeric_features)
    ctx = ModelContext(
        pipeline=model.name, customer="bench", data_date=None, lake_uri="",  # type: ignore[arg-type]
        settings=model.settings(hidden_units=(128, 64), dropout=0.1), platform=CustomerSettings(),
    )  # fmt: skip
    served = _saved_and_loaded(root, model, build_model(model, ctx, np.zeros(n), np.ones(n)),
                               model_store.KERAS.name)  # fmt: skip
    net, numeric = served.model, list(model.numeric_features)

    def baseline(chunk: pd.DataFrame) -> Any:
        inputs = {"numeric": chunk[numeric].to_numpy(dtype=np.float32)}
        inputs |= {c: chunk[c].to_numpy().reshape(-1, 1) for c in model.categorical_features}
        return net.predict(inputs, batch_size=8192, verbose=0)

    return served, baseline


def lightgbm_model(root: Path, sample: pd.DataFrame) -> tuple[Any, Callable[[pd.DataFrame], Any]]:
    """A booster fitted on random rows (the frame training builds), stored and loaded as the
    platform does; the baseline is LightGBM's own predict on each in-memory chunk with its
    categoricals as pandas categories."""
    import lightgbm as lgb

    from model_steps import model_store
    from model_steps.serving import io_spec, tabular_frame

    model, io = LIGHTGBM_MODEL, io_spec(LIGHTGBM_MODEL)
    x = tabular_frame(sample, io)
    labels = np.random.default_rng(2).integers(0, len(model.classes), len(x))
    params = {"objective": "multiclass", "num_class": len(model.classes), "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, label=labels), num_boost_round=50)
    served = _saved_and_loaded(root, model, booster, model_store.LIGHTGBM.name)
    as_category = dict.fromkeys(model.categorical_features, "category")
    return served, lambda chunk: booster.predict(chunk.astype(as_category))


def xgboost_model(root: Path, sample: pd.DataFrame) -> tuple[Any, Callable[[pd.DataFrame], Any]]:
    """As lightgbm_model, with XGBoost: the baseline is the booster's own inplace_predict."""
    import xgboost as xgb

    from model_steps import model_store
    from model_steps.serving import io_spec, tabular_frame

    model, io = LIGHTGBM_MODEL, io_spec(LIGHTGBM_MODEL)
    x = tabular_frame(sample, io)
    labels = np.random.default_rng(2).integers(0, len(model.classes), len(x))
    params = {"objective": "multi:softprob", "num_class": len(model.classes), "max_depth": 6}
    booster = xgb.train(params, xgb.DMatrix(x, labels, enable_categorical=True), 50)
    served = _saved_and_loaded(root, model, booster, model_store.XGBOOST.name)
    return served, lambda chunk: booster.inplace_predict(tabular_frame(chunk, io))


def sklearn_model(root: Path, sample: pd.DataFrame) -> tuple[Any, Callable[[pd.DataFrame], Any]]:
    """As lightgbm_model, with scikit-learn's histogram boosting: the baseline is its own
    predict_proba."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from model_steps import model_store
    from model_steps.serving import io_spec, tabular_frame

    model, io = LIGHTGBM_MODEL, io_spec(LIGHTGBM_MODEL)
    x = tabular_frame(sample, io)
    labels = np.random.default_rng(2).integers(0, len(model.classes), len(x))
    est = HistGradientBoostingClassifier(max_iter=50, early_stopping=False).fit(x, labels)
    served = _saved_and_loaded(root, model, est, model_store.SKOPS.name)
    return served, lambda chunk: est.predict_proba(tabular_frame(chunk, io))


def mlp(inputs: Any) -> Any:
    """The benchmark's PyTorch architecture (a model's ``module`` hook): an embedding of 8 per
    categorical, the numeric columns, two hidden layers of 64, one logit per class."""
    import torch
    from torch import nn

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(nn.Embedding(len(v) + 1, 8)
                                            for v in inputs.categorical.values())  # fmt: skip
            width = len(inputs.numeric) + 8 * len(self.embeddings)
            self.body = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 64),
                                      nn.ReLU(), nn.Linear(64, inputs.outputs))  # fmt: skip

        def forward(self, numeric: Any, codes: Any) -> Any:
            parts = [numeric, *(e(codes[:, j]) for j, e in enumerate(self.embeddings))]
            return self.body(torch.cat(parts, dim=1))

    return Mlp()


def pytorch_model(root: Path, sample: pd.DataFrame) -> tuple[Any, Callable[[pd.DataFrame], Any]]:
    """As lightgbm_model, with an MLP (untrained) stored as safetensors weights and loaded into
    the module the model's code builds; the baseline is the module's own forward in batches."""
    import dataclasses

    import torch

    from model_steps import model_store

    model = dataclasses.replace(LIGHTGBM_MODEL, framework="pytorch", module=mlp)
    torch.manual_seed(0)
    module = mlp(model.module_inputs).eval()
    served = _saved_and_loaded(root, model, module, model_store.TORCH.name, code=model)
    numeric, vocabularies = list(model.numeric_features), model.categorical_features

    def baseline(chunk: pd.DataFrame) -> Any:
        x = torch.from_numpy(chunk[numeric].to_numpy(dtype=np.float32))
        coded = [
            (pd.Index(v).get_indexer(chunk[c].to_numpy()), len(v)) for c, v in vocabularies.items()
        ]
        codes_t = torch.from_numpy(
            np.column_stack([np.where(k >= 0, k, n) for k, n in coded]).astype(np.int64)
        )
        with torch.inference_mode():
            return [torch.softmax(module(x[i : i + 8192], codes_t[i : i + 8192]), dim=1)
                    for i in range(0, len(chunk), 8192)]  # fmt: skip

    return served, baseline


# the other frameworks' models on a sample of the rows: (served, baseline)
TREE_MODELS = {"lightgbm": lightgbm_model, "xgboost": xgboost_model, "sklearn": sklearn_model,
               "pytorch": pytorch_model}  # fmt: skip


def _saved_and_loaded(root: Path, model: Any, obj: Any, fmt: str, code: Any = None) -> Any:
    from model_steps import model_store
    from model_steps.serving import io_spec

    folder = root / f"model-{fmt}"
    manifest = model_store.save(folder, obj, fmt=fmt, model=model.name, task=model.task,
                                io=model_store.IoSpec(**io_spec(model)))  # fmt: skip
    return model_store.load_dir(folder, manifest.digest, "benchmark model", code)


def measure(framework: str, root: Path, rows: int, chunk_rows: int, repeat: int) -> dict[str, Any]:
    """One framework: its feature table, then ``repeat`` times the baseline over every chunk and
    the score step, alternated (a load spike hits both alike); medians of each."""
    model = KERAS_MODEL if framework == "keras" else LIGHTGBM_MODEL
    root = root / framework
    features = feature_table(root, model, rows, files=max(1, rows // 250_000))
    parts = sorted((root / "features" / "attempt=bench").glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(p) for p in parts])[list(model.input_columns)]
    served, baseline = (
        keras_model(root) if framework == "keras"
        else TREE_MODELS[framework](root, frame.head(20_000))
    )  # fmt: skip
    baseline(frame.head(1000))  # first-call set-up off the clock, for both paths alike
    served.predict(frame.head(1000))
    chunks = [frame.iloc[i : i + chunk_rows] for i in range(0, rows, chunk_rows)]
    raw, served_s, step, step_predict = [], [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for chunk in chunks:
            baseline(chunk)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for chunk in chunks:
            served.predict(chunk)
        served_s.append(time.perf_counter() - t0)
        done = score_table(served, model, features, f"file://{root}/scores",
                           chunk_rows=chunk_rows, model_version="bench")  # fmt: skip
        step.append(done["seconds"])
        step_predict.append(done["predict_seconds"])
    raw_s, served_m, step_s = (statistics.median(x) for x in (raw, served_s, step))
    return {
        "framework": framework, "model": model.name, "rows": rows, "chunk_rows": chunk_rows,
        "repeat": repeat, "raw_predict_rows_per_s": round(rows / raw_s),
        "served_rows_per_s": round(rows / served_m), "step_rows_per_s": round(rows / step_s),
        "raw_predict_s": round(raw_s, 2), "served_predict_s": round(served_m, 2),
        "step_s": round(step_s, 2), "step_predict_s": round(statistics.median(step_predict), 2),
        "ratio_served_vs_raw": round(raw_s / served_m, 3),
        "served_ratios_per_pair": [round(r / t, 3) for r, t in zip(raw, served_s, strict=True)],
        "ratio_step_vs_raw": round(raw_s / step_s, 3),
        "ratios_per_pair": [round(r / t, 3) for r, t in zip(raw, step, strict=True)],
        "target": TARGET,
    }  # fmt: skip


def print_table(rows: int, chunk_rows: int, results: list[dict[str, Any]]) -> None:
    print(f"Batch scoring, {rows:,} rows, chunks of {chunk_rows:,}, medians "
          f"(goal >= {TARGET}x)")  # fmt: skip
    print(f"{'framework':<10}{'path':<34}{'seconds':>10}{'rows/s':>12}{'ratio':>8}")
    for r in results:
        print(f"{r['framework']:<10}{'framework predict, in memory':<34}{r['raw_predict_s']:>10.2f}"
              f"{r['raw_predict_rows_per_s']:>12,}{'':>8}")  # fmt: skip
        for path, kind in (("served model (platform interface)", "served"),
                           ("score step (read+predict+write)", "step")):  # fmt: skip
            ratio, pairs = (
                r[f"ratio_{kind}_vs_raw"],
                r[f"{'served_' if kind == 'served' else ''}ratios_per_pair"],
            )
            verdict = f" {pairs}" + ("" if ratio >= TARGET else " MISSES")
            seconds = r["served_predict_s" if kind == "served" else "step_s"]
            print(f"{'':<10}{path:<34}{seconds:>10.2f}{r[f'{kind}_rows_per_s']:>12,}"
                  f"{ratio:>7.2f}x{verdict}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="100k rows")
    parser.add_argument("--repeat", type=int, default=3, help="baseline/step pairs (medians)")
    parser.add_argument("--framework", choices=FRAMEWORKS, action="append",
                        help="one framework (repeatable; default: every one)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "score.json")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        results = [measure(f, Path(tmp), rows, args.chunk_rows, args.repeat)
                   for f in (args.framework or FRAMEWORKS)]  # fmt: skip
    print_table(rows, args.chunk_rows, results)
    results_file.write(args.out, {"benchmark": "score", "frameworks": results,
                                  "python": platform.python_version(), "cpus": os.cpu_count()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

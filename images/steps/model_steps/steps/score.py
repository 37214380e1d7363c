"""Score step: the champion (MLflow alias ``champion``) scores the run's population in chunks.

Reads the committed feature table chunk by chunk (``scoring.chunk_rows``), writes one parquet part
per chunk into a fresh attempt folder on S3 (``SCORES_URI``; the local S3 endpoint on the embedded
default), then commits with ``_MANIFEST.json`` and removes older attempts. Part names and contents
depend only on the feature table and the model, so a retry replaces the output exactly.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from model_steps import lake
from model_steps.contract import StepContext, StepError
from model_steps.scoring import scores_table_uri
from model_steps.steps.evaluate import ALIAS
from model_steps.tracking import (
    bound_mlflow_client,
    registered_model_name,
    tracking_uri,
    wait_for_server,
)

log = logging.getLogger("model_steps.score")


def _champion(ctx: StepContext) -> tuple[Any, str, str]:
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(ctx)
    bound_mlflow_client()
    wait_for_server(uri)
    mlflow.set_tracking_uri(uri)
    name = registered_model_name(ctx.pipeline, ctx.customer)
    try:
        version = str(mlflow.MlflowClient().get_model_version_by_alias(name, ALIAS).version)
    except MlflowException as exc:
        raise StepError(f"{name} has no @{ALIAS} in MLflow ({uri}): nothing to score with") from exc
    model_uri = f"models:/{name}/{version}"  # pinned: the alias may move while we score
    return mlflow.pyfunc.load_model(model_uri), name, version


def run(ctx: StepContext) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model_steps.training import INPUT_COLUMNS, KEY

    started = time.monotonic()
    features_uri = ctx.lake_path("features")
    manifest = lake.read_manifest(features_uri)
    model, name, version = _champion(ctx)
    chunk_rows = int(ctx.config.get("scoring", {}).get("chunk_rows", 200_000))
    out_uri = scores_table_uri(ctx)
    attempt = f"attempt={lake.new_attempt_id()}"
    fs_in, _ = lake.filesystem(features_uri)
    fs_out, _ = lake.filesystem(out_uri)
    files, rows, predict_s = [], 0, 0.0
    for source in manifest["files"]:
        path = lake.filesystem(lake.join(features_uri, manifest["attempt"], source))[1]
        with fs_in.open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(
                batch_size=chunk_rows, columns=[KEY, *INPUT_COLUMNS]
            ):
                frame = batch.to_pandas()
                t0 = time.monotonic()
                scores = model.predict(frame[list(INPUT_COLUMNS)])["propensity"].to_numpy()
                predict_s += time.monotonic() - t0
                part = f"part-{len(files):05d}.parquet"
                table = pa.table({
                    "diner_id": frame[KEY].astype(str).to_numpy(),
                    "score": scores.astype("float64"),
                    "model_version": pa.array([version] * len(frame), pa.string()),
                })  # fmt: skip
                target = lake.filesystem(lake.join(out_uri, attempt, part))[1]
                with fs_out.open(target, "wb") as out:
                    pq.write_table(table, out)
                files.append(part)
                rows += len(frame)
    if rows != manifest["rows"]:
        raise StepError(f"scored {rows} rows but {features_uri} holds {manifest['rows']}")
    committed = {
        "table": "scores",
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "run_key": ctx.run_key,
        "registered_model": name,
        "model_version": version,
        "features_uri": features_uri,
        "rows": rows,
        "attempt": attempt,
        "files": files,
        "columns": ["diner_id", "score", "model_version"],
        "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    lake.write_json_atomic(lake.join(out_uri, lake.MANIFEST), committed)  # the commit point
    for d in lake.list_dirs(out_uri):
        if d.startswith("attempt=") and d != attempt:
            lake.remove_tree(lake.join(out_uri, d))
    seconds = time.monotonic() - started
    log.info("scored %d rows with %s v%s in %.1fs -> %s", rows, name, version, seconds, out_uri)
    return {
        "status": "scored",
        "rows": rows,
        "model_uri": f"models:/{name}/{version}",
        "model_version": version,
        "output_uri": out_uri,
        "manifest_uri": lake.join(out_uri, lake.MANIFEST),
        "parts": len(files),
        "rows_per_second": round(rows / seconds, 1),
        "predict_seconds": round(predict_s, 2),
        "seconds": round(seconds, 1),
    }

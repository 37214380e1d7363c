"""Score step: the champion (MLflow alias ``champion``) scores the run's population in chunks.

Reads the committed population table (ingest's unlabelled features as of the data date) chunk by
chunk (``scoring.chunk_rows``), writes one parquet part per chunk into a fresh attempt folder on S3
(``SCORES_URI``; the local S3 endpoint on the embedded default), then commits with
``_MANIFEST.json`` and removes older attempts. Part names and contents depend only on the table and
the model, so a retry replaces the output exactly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlplatform_contract.results import ScoreResult
from model_steps import lake, model_loader, pinned
from model_steps.contract import StepContext, StepError
from model_steps.features import POPULATION
from model_steps.model_api import Model
from model_steps.scoring import score_columns, scores_table_uri
from model_steps.tracking import (
    CHAMPION_ALIAS,
    champion_version,
    connect,
    registered_model_name,
    tracking_uri,
)

log = logging.getLogger("model_steps.score")


def _champion(ctx: StepContext, code: Any) -> tuple[Any, str, str, bool]:
    """The version to score with: the run's pinned *model_version* (re-score, backfill, rollback;
    it must have passed its gate), else the champion, loaded with the step's model (``code``,
    model_store.load_dir's). Returns (served, name, version, pinned)."""
    from model_steps.model_store import load_version

    uri = tracking_uri(ctx)
    connect(uri)
    name = registered_model_name(ctx.pipeline, ctx.customer)
    if (version := pinned.requested_version(ctx)) is not None:
        import mlflow

        pinned.eligible(mlflow.MlflowClient(), name, version)
        log.info("pinned run: scoring with %s v%s, not @%s", name, version, CHAMPION_ALIAS)
        return load_version(name, version, code), name, version, True
    champion = champion_version(name)
    if champion is None:
        raise StepError(f"{name} has no @{CHAMPION_ALIAS} in MLflow ({uri}): nothing to score with")
    version = str(champion.version)
    # pinned: the alias may move while we score
    return load_version(name, version, code), name, version, False  # verified against its digest


def _prefetch(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Produce ``items`` in a background thread, ``depth`` ahead of the consumer."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()

    def fill() -> None:
        try:
            for item in items:
                buffer.put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)
        buffer.put(done)

    threading.Thread(target=fill, daemon=True, name="score-read").start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def score_table(
    served: Any,
    model: Model,
    features_uri: str,
    out_uri: str,
    *,
    chunk_rows: int,
    model_version: str,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a committed feature table chunk by chunk into a new attempt of ``out_uri``; commit it.

    Returns the committed manifest plus timing. Parts are numbered in reading order, so the same
    table and model give the same files."""
    key, output = model.key, model.output_column
    started = time.monotonic()
    manifest = lake.read_manifest(features_uri)
    attempt = lake.new_attempt(out_uri)
    fs_in, _ = lake.filesystem(features_uri)
    fs_out, _ = lake.filesystem(out_uri)
    fs_out.makedirs(lake.filesystem(attempt.uri)[1], exist_ok=True)

    files, rows, predict_s = _score_parts(
        served, model, (features_uri, manifest, fs_in), (attempt, fs_out), chunk_rows,
        model_version,
    )  # fmt: skip
    if rows != manifest["rows"]:
        raise StepError(f"scored {rows} rows but {features_uri} holds {manifest['rows']}")
    committed = attempt.commit(
        {
            "table": "scores",
            **(meta or {}),
            "model_version": model_version,
            "features_uri": features_uri,
            "rows": rows,
            "key": key,
            "value": output,
            "columns": list(score_columns(model)),
        },
        files,
    )
    return {**committed, "seconds": time.monotonic() - started, "predict_seconds": predict_s}


def run(ctx: StepContext) -> ScoreResult:
    started = time.monotonic()
    loaded = model_loader.load(ctx)
    features_uri = ctx.lake_path(POPULATION)
    lake.read_manifest(features_uri)  # a clear error before loading the model if ingest never ran
    served, name, version, is_pinned = _champion(ctx, loaded.model)
    out_uri = scores_table_uri(ctx)
    chunk_rows = loaded.platform.scoring.chunk_rows
    meta = {"pipeline": ctx.pipeline, "customer": ctx.customer, "run_key": ctx.run_key,
            "registered_model": name, "data_date": ctx.data_date.isoformat()}  # fmt: skip
    done = score_table(
        served, loaded.model, features_uri, out_uri,
        chunk_rows=chunk_rows, model_version=version, meta=meta,
    )  # fmt: skip
    seconds = time.monotonic() - started
    log.info(
        "scored %d rows with %s v%s in %.1fs -> %s", done["rows"], name, version, seconds, out_uri
    )
    return ScoreResult(
        status="scored",
        rows=done["rows"],
        model_uri=f"models:/{name}/{version}",
        model_version=version,
        pinned=is_pinned,
        output_uri=out_uri,
        manifest_uri=lake.join(out_uri, lake.MANIFEST),
        parts=len(done["files"]),
        rows_per_second=round(done["rows"] / done["seconds"], 1),
        predict_seconds=round(done["predict_seconds"], 2),
        seconds=round(seconds, 1),
    )


def _score_parts(
    served: Any, model: Model, source: tuple[str, dict[str, Any], Any], out: tuple[Any, Any],
    chunk_rows: int, model_version: str,
) -> tuple[list[str], int, float]:  # fmt: skip
    """Read, predict and write part by part: (part files, rows, seconds spent predicting)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    key, inputs, output = model.key, list(model.input_columns), model.output_column
    categorical = list(model.categorical_features)
    (features_uri, manifest, fs_in), (attempt, fs_out) = source, out

    def chunks() -> Iterator[tuple[Any, Any]]:
        for source in manifest["files"]:
            path = lake.filesystem(lake.join(features_uri, manifest["attempt"], source))[1]
            with fs_in.open(path, "rb") as fh:
                # categoricals as the file's dictionaries (pandas categories): no Python string
                # per row, and the served model converts each category once (serving.py)
                names = set(pq.ParquetFile(fh).schema_arrow.names)
                reader = pq.ParquetFile(fh, read_dictionary=[c for c in categorical if c in names])
                for batch in reader.iter_batches(batch_size=chunk_rows, columns=[key, *inputs]):
                    # the framework's inputs too, while the main thread predicts the last chunk
                    yield batch, served.inputs(batch.select(inputs).to_pandas())

    # dictionary pages only for the columns with a few values (the version, the predicted class):
    # tried on the unique keys and scores it cost 3.5x the write's CPU, for a larger file
    dictionary = ["model_version", *([output] if model.class_columns else [])]

    def write(table: Any, part: str) -> None:
        with fs_out.open(lake.filesystem(lake.join(attempt.uri, part))[1], "wb") as out:
            pq.write_table(table, out, use_dictionary=dictionary)

    # Reading the next chunk and writing the last one overlap with predicting this one (Arrow and
    # TensorFlow release the GIL): the step keeps up with the model's raw in-memory throughput.
    files, rows, predict_s, writes = [], 0, 0.0, []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-write") as writer:
        for batch, prepared in _prefetch(chunks()):
            t0 = time.monotonic()
            scored = served.outputs(prepared, pd.RangeIndex(batch.num_rows))
            predict_s += time.monotonic() - t0
            version = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(batch.num_rows, np.int32)), pa.array([model_version])
            )
            values = {c: pa.array(scored[c].to_numpy(), pa.float64()) for c in model.class_columns}
            table = pa.table({
                key: batch.column(key).cast(pa.string()), **values,
                output: _output_array(scored[output], bool(model.class_columns)),
                "model_version": version,
            })  # fmt: skip
            files.append(f"part-{len(files):05d}.parquet")
            writes.append(writer.submit(write, table, files[-1]))
            rows += batch.num_rows
        for done in writes:
            done.result()  # a failed write fails the step before anything is committed
    return files, rows, predict_s


def _output_array(column: Any, is_class: bool) -> Any:
    """The output column as the scores table stores it: the value as float64, or the class name
    as a string (from a categorical's codes when the predictor gave one: one lookup per row)."""
    import pandas as pd
    import pyarrow as pa

    if not is_class:
        return pa.array(column.to_numpy(), pa.float64())
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = pa.array(column.cat.categories.astype(str), pa.string())
        codes = column.cat.codes.to_numpy()
        return names.take(pa.array(codes, mask=codes < 0))  # -1: missing
    return pa.array(column.to_numpy(), pa.string())

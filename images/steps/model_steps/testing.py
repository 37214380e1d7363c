"""A model author's test kit: run a model's hooks end to end on tiny data, the way the steps do.

``run_hooks`` writes the model's example data (``Model.example_data``) into a scratch lake, reads it
through the platform's raw-zone checks, builds both feature tables with the platform's point in
time, validates the training table with the model's own suite, builds and fits the network for an
epoch through the platform's input layers, predicts, and turns the predictions into CRM records
with the model's hooks. Every step of the real pipeline that touches model code runs; nothing is
mocked. ``tests/images/steps/test_model_contract.py`` runs it for every installed model, so a new
model is covered by `make test` without writing a test; its own tests (``models/<name>/tests/``)
add what only its author knows.

Also a pytest plugin (``pytest_plugins = ("model_steps.testing",)``): the ``spark`` fixture.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest

from mlplatform_contract.settings import CustomerSettings
from model_steps.checkpoints import FitCheckpoints
from model_steps.features import build_table, point_in_time, training_cutoff, window
from model_steps.model_api import Model, ModelContext
from model_steps.raw_reader import read_raw

TENANT = "test-tenant"


@dataclass
class HookRun:
    training: Any  # pandas: the labelled table at the training cutoff
    population: Any  # pandas: the unlabelled table at the data date
    validation: dict[str, Any]  # the suite's result on the training table (GX)
    predictions: Any  # numpy: the fitted network's outputs on the population
    records: list[dict[str, Any]]  # the CRM records the model makes of those predictions
    warnings: list[str]
    clicks: Any = None  # pandas: the clicks hook's keys in the training cutoff's label window
    # a fit that saves two checkpoints or more, killed after its first and resumed: its outputs
    resumed: Any = None


# One JVM serves every Spark test of a test process (minutes, hundreds of jobs): 2g of heap (its
# old generation peaked at 387 of 682 MB after two test modules with 1g), and no job history
# kept beyond what a test reads back (Spark keeps 1000 jobs' and SQL executions' data by default).
LOCAL_TEST_SPARK = {
    "master": "local[2]", "shuffle_partitions": 4, "driver_memory": "2g",
    "extra_conf": {"spark.ui.retainedJobs": "50",
                   "spark.ui.retainedStages": "50", "spark.sql.ui.retainedExecutions": "20"},
}  # fmt: skip


def local_spark() -> Any:
    from pyspark.sql import SparkSession

    from model_steps.spark_config import spark_conf

    conf = spark_conf({"data": {"spark": LOCAL_TEST_SPARK}}, "file:///tmp")
    # the quick JIT's code cache (48 MB, C1 only) was 44 MB full after two test modules: a JVM
    # that serves a whole test session gets room, so its JIT is never switched off mid-session
    conf["spark.driver.extraJavaOptions"] += " -XX:ReservedCodeCacheSize=160m"
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(scope="session")
def spark() -> Any:
    session = local_spark()
    yield session
    session.stop()


def dag_settings(model: Model, customer: str | None = None) -> dict[str, Any]:
    """The settings the model's DAG module (``dags/<name>.py``) layers for ``customer`` (default:
    its first): ``defaults`` <- its tier <- its own ``settings``, read from the module's literal
    spec (the workload has no Airflow to import it with). {} when there is no DAG module."""
    import ast
    from pathlib import Path

    from mlplatform_contract.settings import deep_merge

    here = Path(model.suite).resolve()
    modules = [p / "dags" / f"{model.name}.py" for p in here.parents]
    module = next((m for m in modules if m.is_file()), None)
    if module is None:
        return {}
    spec: dict[str, Any] = {}
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "register_pipeline":
            spec = ast.literal_eval(node.args[1])
    customers = spec.get("customers") or [{}]
    chosen = next((c for c in customers if c.get("id") == customer), customers[0])
    tier = spec.get("tiers", {}).get(chosen.get("tier", ""), {})
    return deep_merge(deep_merge(spec.get("defaults", {}), tier), chosen.get("settings", {}))


def contexts(
    model: Model, data_date: dt.date, config: dict[str, Any] | None, lake_uri: str
) -> tuple[CustomerSettings, Any, dict[str, ModelContext]]:
    platform = CustomerSettings.model_validate(config or {})
    settings = model.settings.model_validate(platform.model)
    data = platform.data
    cutoffs = {
        "features": training_cutoff(data_date, data.label_window_days),
        "population": data_date,
    }
    out = {
        table: ModelContext(
            pipeline=model.name,
            customer=TENANT,
            data_date=data_date,
            lake_uri=lake_uri,
            settings=settings,
            platform=platform,
            window=window(cut, data.lookback_days, data.label_window_days),
        )
        for table, cut in cutoffs.items()
    }
    return platform, settings, out


def run_hooks(
    model: Model, spark: Any, *, size: int = 600, config: dict[str, Any] | None = None
) -> HookRun:
    """Every hook of ``model`` on ``size`` entities of its example data (see the module doc),
    with ``config`` as the customer's settings (default: what its DAG module layers for its first
    customer, :func:`dag_settings`; pass ``{}`` for the platform's defaults)."""
    if model.example_data is None:
        raise pytest.skip.Exception(f"model {model.name} ships no example_data hook")
    if config is None:
        config = dag_settings(model)
    lake_uri = f"file://{tempfile.mkdtemp(prefix=f'{model.name}-')}/lake"
    data_date = model.example_data(lake_uri, TENANT, size)
    platform, _, ctxs = contexts(model, data_date, config, lake_uri)
    frames, report = read_raw(
        spark, lake_uri, TENANT, data_date, tables=model.raw_tables,
        lookback_days=platform.data.lookback_days,
        label_window_days=platform.data.label_window_days,
    )  # fmt: skip
    tables = {
        name: build_table(frames, model, ctx, labelled=(name == "features")).toPandas()
        for name, ctx in ctxs.items()
    }
    predictions, resumed = _fit_and_predict(
        model, ctxs["features"], tables["features"], tables["population"]
    )
    return HookRun(
        training=tables["features"],
        population=tables["population"],
        validation=_validate(model, tables["features"], platform),
        predictions=predictions,
        records=_records(model, ctxs["population"], tables["population"], predictions),
        warnings=report.warnings,
        clicks=_clicks(model, frames, ctxs["features"]),
        resumed=resumed,
    )


def _clicks(model: Model, frames: dict[str, Any], ctx: ModelContext) -> Any:
    """The ``clicks`` hook on the label window after the training cutoff, as the monitor applies
    it (the same point-in-time cut as the label), as pandas; None for a model without one."""
    if model.clicks is None or ctx.window is None:
        return None
    _, after = point_in_time(frames, model, ctx.window)
    return model.clicks(after, ctx).toPandas()


def _validate(model: Model, df: Any, platform: CustomerSettings) -> dict[str, Any]:
    from model_steps.expectations import load_suite
    from model_steps.steps.validate import describe, run_gx, suite_parameters

    _, suite = load_suite(model)
    params = suite_parameters(
        platform.validation.model_dump(),
        {"lookback_days": platform.data.lookback_days},
        model.settings.model_validate(platform.model).model_dump(mode="json"),
    )
    with tempfile.TemporaryDirectory(prefix="gx-") as docs:
        result = run_gx({"features": (df, suite)}, params, docs)["features"]
    # "features table column label: expect_…(…) failed: observed …": expectation and column apart
    failed = [describe(r, "features table") for r in result.results if not r.success]
    return {"success": bool(result.success), "failed": failed}


def _fit_and_predict(
    model: Model, ctx: ModelContext, training: Any, population: Any
) -> tuple[Any, Any]:
    """One epoch through the platform's input layers and the model's network (Keras), or the
    model's own fit (another framework)."""
    import numpy as np

    if model.framework != "keras":
        return _fit_other(model, ctx, training, population)

    from model_steps.training import (
        Shard,
        build_model,
        model_inputs,
        moments_to_stats,
        numeric_moments,
    )

    columns = {c: training[c].to_numpy() for c in model.input_columns}
    for c in model.numeric_features:
        columns[c] = columns[c].astype(np.float32)
    label = training[model.label_column].to_numpy(np.float32)
    shard = Shard(columns, label)
    mean, variance = moments_to_stats(numeric_moments(shard, model.numeric_features))
    net = build_model(model, ctx, mean, variance)
    loss = "mse" if model.task == "regression" else "binary_crossentropy"
    net.compile(optimizer="adam", loss=loss)
    net.fit(model_inputs(columns, model), label, epochs=1, batch_size=128, verbose=0)
    return net.predict(model_inputs(population, model), verbose=0).ravel(), None


class FitKilled(Exception):
    """What :class:`KilledAfterEpoch` raises: the attempt's process would have died here."""


class KilledAfterEpoch(FitCheckpoints):
    """The checkpoint store of an attempt killed right after it commits epoch ``k``."""

    def __init__(self, run_dir: str, k: int) -> None:
        super().__init__(run_dir)
        self.k = k

    def save(self, epoch: int, tensors: Any = None, state: Any = None) -> None:
        super().save(epoch, tensors, state)
        if epoch == self.k:
            raise FitKilled(f"killed after epoch {epoch}")


def _fit_other(model: Model, ctx: ModelContext, training: Any, population: Any) -> tuple[Any, Any]:
    """Another framework: the model's ``fit`` on the tiny training table, saved in its format and
    loaded back through model_store (the gate's and scoring's interface) to predict. A fit that
    saves two checkpoints or more is fitted again, killed after its first one, and resumed, as a
    retried train task would be: (predictions, the resumed fit's predictions or None)."""
    from model_steps import model_store
    from model_steps.model_api import FitData
    from model_steps.serving import io_spec, predictions, tabular_frame

    train = tabular_frame(training, io_spec(model))
    train[model.label_column] = training[model.label_column].to_numpy()

    def fit_and_predict(store: FitCheckpoints) -> Any:
        fitted = model.fit(FitData.of(model, train, train, 0, store), ctx)  # type: ignore[misc]
        served = model_store.round_trip(fitted, model, f"model {model.name}")
        return predictions(served, model, population)

    with tempfile.TemporaryDirectory(prefix="fit-") as tmp:
        whole = FitCheckpoints(f"file://{tmp}/whole")
        predicted = fit_and_predict(whole)
        if len(whole.epochs_saved) < 2:
            return predicted, None
        with contextlib.suppress(FitKilled):
            fit_and_predict(KilledAfterEpoch(f"file://{tmp}/killed", whole.epochs_saved[0][0]))
        return predicted, fit_and_predict(FitCheckpoints(f"file://{tmp}/killed"))


def _records(model: Model, ctx: ModelContext, population: Any, predictions: Any) -> list[dict]:
    import pyarrow as pa

    from model_steps.serving import class_frame, io_spec

    columns = {model.key: pa.array(population[model.key].astype(str))}
    if model.class_columns:  # the class probabilities and the likeliest class, as scoring writes
        frame = class_frame(predictions, io_spec(model), population.index)
        columns |= {c: pa.array(frame[c].to_numpy()) for c in frame.columns}
    else:
        columns[model.output_column] = pa.array(predictions.astype("float64"))
    scores = pa.table({**columns, "model_version": pa.array(["1"] * len(population))})
    chosen = model.crm_select(scores, ctx)
    return [model.crm_record(row, ctx) for row in chosen.to_pylist()]


def hook_run_problems(model: Model, run: HookRun) -> list[str]:
    """What the platform requires of any model's hook run (the generic contract test)."""
    import numpy as np

    problems = []
    schema = model.table_schema(labelled=True)
    if list(run.training.columns) != list(schema):
        problems.append(f"training table columns {list(run.training.columns)} != {list(schema)}")
    if model.label_column in run.population.columns:
        problems.append("the population has a label column")
    if run.clicks is not None and model.key not in run.clicks.columns:
        problems.append(
            f"the clicks hook returns no {model.key} column: {list(run.clicks.columns)}"
        )
    if run.training[model.key].duplicated().any():
        problems.append(f"{model.key} is not unique in the training table")
    if not run.validation["success"]:
        problems.append(
            "its own suite fails on its example data:\n  - "
            + "\n  - ".join(run.validation["failed"])
        )
    if not np.isfinite(run.predictions).all():
        problems.append("the network predicts non-finite values")
    if run.resumed is not None and not np.allclose(run.resumed, run.predictions, atol=1e-6):
        gap = float(np.max(np.abs(np.asarray(run.resumed) - np.asarray(run.predictions))))
        problems.append(
            f"its fit, killed after its first checkpoint and resumed, predicts otherwise than the "
            f"fit that ran through (by up to {gap:.3g}): save and restore all that the next "
            "epochs depend on (the optimizer, the RNG, the fit's own counters)"
        )
    if (
        model.task == "binary_classification"
        and not ((run.predictions >= 0) & (run.predictions <= 1)).all()
    ):
        problems.append("a classifier must output probabilities in [0, 1] (a sigmoid)")
    if not run.records:
        problems.append("crm_select chose no rows of the example population")
    elif not all(isinstance(r, dict) and r for r in run.records):
        problems.append("crm_record must return a non-empty dict per row")
    elif any({"contact_id", "model", "model_version", "run_key"} & set(r) for r in run.records):
        problems.append("crm_record must not set the platform's fields (contact_id, model, ...)")
    return problems

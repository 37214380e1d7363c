"""Point in time, owned by the platform: a model's feature tables as of a cutoff.

The cutoff is the *end* of its day (``cutoff_end = cutoff + 1 day, 00:00 UTC``). Before calling the
model, the platform cuts every raw frame by its table's ``ts_column``: the model's ``features`` hook
sees event rows with ``cutoff_end - lookback_days <= ts < cutoff_end`` and entity rows with
``ts < cutoff_end``; its ``label`` hook sees event rows with ``cutoff_end <= ts < label_end`` and
entity rows with ``ts < label_end`` (entities that exist by the window's end).
So data that arrives after the cutoff cannot leak into features, whatever the model's code does
(``tests/images/steps/test_features.py`` proves it by rewriting the future and comparing).

A run's *data date* is its as-of date, the last day whose raw drops have landed. Ingest builds two
tables from it: the labelled **training table** at ``training_cutoff(data_date)``, whose label window
ends on the data date, and the unlabelled **population** (who gets scored) at the data date itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

# the lake zones of the labelled training table and of the unlabelled table that gets scored
from mlplatform_contract import layout
from model_steps.contract import CheckFailed
from model_steps.model_api import CUTOFF_COLUMN, Model, ModelContext, Window

# the lake zones of the labelled training table and of the unlabelled table that gets scored
FEATURES = layout.FEATURES
POPULATION = layout.POPULATION

SPARK_TYPES = {"string": "string", "int": "int", "double": "double", "date": "date"}
# Spark's simple type names that hold numbers (decimal(p,s) matched by prefix)
_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal", "boolean")


def training_cutoff(data_date: dt.date, label_window_days: int) -> dt.date:
    """The training table's cutoff: the last one whose whole label window lies on or before the
    data date."""
    return data_date - dt.timedelta(days=label_window_days)


def window(cutoff: dt.date, lookback_days: int, label_window_days: int) -> Window:
    end = dt.datetime.combine(cutoff + dt.timedelta(days=1), dt.time())
    return Window(
        cutoff=cutoff,
        lookback_start=end - dt.timedelta(days=lookback_days),
        cutoff_end=end,
        label_end=end + dt.timedelta(days=label_window_days),
    )


def point_in_time(
    frames: Mapping[str, Any], model: Model, w: Window
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what ``features`` may see, what ``label`` may see): each frame cut by its ts_column."""
    from pyspark.sql import functions as F

    def at(t: dt.datetime) -> Any:
        # a string literal is read in the session time zone (UTC); a Python datetime would be
        # converted through the driver process's local zone instead
        return F.lit(t.strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp")

    start, end, label_end = at(w.lookback_start), at(w.cutoff_end), at(w.label_end)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, df in frames.items():
        table = model.table[name]
        if table.ts_column is None:  # a table without time (a static lookup): seen whole
            before[name] = after[name] = df
            continue
        ts = F.col(table.ts_column).cast("timestamp")
        if table.windowed:
            before[name] = df.where((ts >= start) & (ts < end))
            after[name] = df.where((ts >= end) & (ts < label_end))
        else:
            before[name] = df.where(ts < end)
            after[name] = df.where(ts < label_end)
    return before, after


def build_table(frames: Mapping[str, Any], model: Model, ctx: ModelContext, labelled: bool) -> Any:
    """The model's feature table (``Model.table_schema`` order and types) as of ``ctx.window``."""
    from pyspark.sql import functions as F

    assert ctx.window is not None
    before, after = point_in_time(frames, model, ctx.window)
    out = model.features(before, ctx)
    _require_columns(out, [model.key, *model.feature_schema], model, "features")
    _require_lossless(out, model.feature_schema, model, "features")
    out = out.select(
        F.col(model.key).cast("string").alias(model.key),
        F.lit(ctx.window.cutoff).cast("date").alias(CUTOFF_COLUMN),
        *[F.col(c).cast(SPARK_TYPES[t]).alias(c) for c, t in model.feature_schema.items()],
    )
    if not labelled:
        return out
    label = model.label(after, ctx)
    _require_columns(label, [model.key, model.label_column], model, "label")
    _require_lossless(label, {model.label_column: model.task_info.label_type}, model, "label")
    name, kind = model.label_column, model.task_info.label_type
    label = label.select(F.col(model.key).cast("string").alias(model.key), F.col(name).alias(name))
    return out.join(label, model.key, "left").withColumn(
        name, F.coalesce(F.col(name), F.lit(model.label_fill)).cast(kind)
    )


def _require_columns(df: Any, columns: list[str], model: Model, hook: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CheckFailed(
            f"model {model.name}: its {hook} hook returned no column(s) {', '.join(missing)} "
            f"(it returned {', '.join(df.columns)})",
            f"return every column the model declares (feature_schema, label_column) from its "
            f"{hook} hook, or remove the declaration.",
        )


def _require_lossless(df: Any, declared: Mapping[str, str], model: Model, hook: str) -> None:
    """Refuse a cast to the declared type that would change a value (0.37 declared int, "n/a"
    declared double): one Spark pass, only over the columns whose type differs from the
    declaration. A number declared ``double`` always fits."""
    from pyspark.sql import functions as F

    seen = dict(df.dtypes)
    checks = {}
    for column, kind in declared.items():
        target = SPARK_TYPES.get(kind, kind)
        source = seen[column]
        numeric = source.startswith(_NUMERIC)
        if source == target or (target == "double" and numeric):
            continue
        value = F.col(column)
        cast = value.try_cast(target)
        changed = cast.isNull() | (cast.cast(source) != value) if numeric else cast.isNull()
        lossy = value.isNotNull() & changed
        checks[column] = (
            F.sum(F.when(lossy, 1).otherwise(0)),
            F.first(F.when(lossy, value.cast("string")), ignorenulls=True),
        )
    if not checks:
        return
    names = list(checks)
    count_and_example = [
        (n.alias(f"n{i}"), e.alias(f"e{i}")) for i, (n, e) in enumerate(checks.values())
    ]
    row = df.agg(*[agg for pair in count_and_example for agg in pair]).first()
    bad = [
        f"column {c}: declared {declared[c]}, seen {seen[c]} ({row[f'n{i}']} row(s) change "
        f"when cast, e.g. {row[f'e{i}']!r})"
        for i, c in enumerate(names)
        if row[f"n{i}"]
    ]
    if bad:
        raise CheckFailed(
            f"model {model.name}: its {hook} hook returned values that do not fit their declared "
            "type:\n  - " + "\n  - ".join(bad),
            "declare the type the values have (e.g. double for a rate), or round/convert them "
            f"in the {hook} hook; then run `make suite MODEL={model.name}`.",
        )

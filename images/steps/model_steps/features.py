"""The customer-propensity feature tables: one row per diner as of a cutoff date.

Point in time: the cutoff is the *end* of the data date (``cutoff_end = data_date + 1 day, 00:00 UTC``).
Every feature uses only events with ``cutoff_end - lookback_days <= ts < cutoff_end`` (and diners who
signed up on or before the data date); the label uses only ``cutoff_end <= ts < cutoff_end +
label_window_days``. Nothing else is read, so data arriving after the cutoff cannot leak into features
(``tests/images/steps/test_features.py`` proves it by rewriting the future and comparing).

A run's *data date* is its as-of date, the last day whose raw drops have landed. Ingest builds two
tables from it: the labelled **training table** at ``training_cutoff(data_date)``, whose label window
ends on the data date, and the unlabelled **population** (who gets scored) at the data date itself,
so scores use the freshest features while training only ever sees complete labels.

Two implementations of the same definitions: :func:`build_features_spark` (the ingest step) and
:func:`build_features_pandas` (the benchmark's baseline, and a cross-check in the tests).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from model_steps.raw_schema import CHANNELS, REGIONS, SEGMENTS

KEY = "diner_id"
LABEL = "label"

# name -> parquet logical type of the output table, in output order
FEATURE_SCHEMA: dict[str, str] = {
    KEY: "string",
    "cutoff_date": "date",
    "segment": "string",
    "region": "string",
    "loyalty_member": "int",
    "tenure_days": "int",
    "recency_days": "int",
    "orders_30d": "int",
    "orders_90d": "int",
    "orders_lookback": "int",
    "monetary_lookback": "double",
    "avg_order_value": "double",
    **{f"share_{c}": "double" for c in CHANNELS},
    "sends_lookback": "int",
    "open_rate": "double",
    "click_rate": "double",
    "past_conversion_rate": "double",
    "days_since_last_open": "int",
    **{f"segment_{s}": "int" for s in SEGMENTS},
    **{f"region_{r}": "int" for r in REGIONS},
    LABEL: "int",
}
POPULATION = "population"  # the lake zone of the unlabelled table that gets scored
# the population table: the same features, no label (its window has not happened yet)
POPULATION_SCHEMA: dict[str, str] = {c: t for c, t in FEATURE_SCHEMA.items() if c != LABEL}
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c
    for c, t in FEATURE_SCHEMA.items()
    if t in ("int", "double") and c not in (LABEL,) and not c.startswith(("segment_", "region_"))
)


def training_cutoff(data_date: dt.date, label_window_days: int) -> dt.date:
    """The training table's cutoff: the last one whose whole label window lies on or before the
    data date."""
    return data_date - dt.timedelta(days=label_window_days)


def window(cutoff: dt.date, lookback_days: int, label_window_days: int) -> dict[str, dt.datetime]:
    end = dt.datetime.combine(cutoff + dt.timedelta(days=1), dt.time())
    return {
        "lookback_start": end - dt.timedelta(days=lookback_days),
        "cutoff_end": end,
        "label_end": end + dt.timedelta(days=label_window_days),
    }


def build_features_spark(
    diners: Any,
    orders: Any,
    events: Any,
    cutoff: dt.date,
    *,
    lookback_days: int = 365,
    label_window_days: int = 14,
    labelled: bool = True,
) -> Any:
    """Typed Spark frames in (raw_schema columns), the feature table out (FEATURE_SCHEMA order;
    POPULATION_SCHEMA when not ``labelled``)."""
    from pyspark.sql import functions as F

    w = window(cutoff, lookback_days, label_window_days)
    # string literals are read in the session time zone (UTC); a Python datetime would be converted
    # through the driver process's local zone instead
    start, end, label_end = (
        F.lit(w[k].strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp")
        for k in ("lookback_start", "cutoff_end", "label_end")
    )
    cut = F.lit(cutoff).cast("date")

    pop = diners.where(F.col("signup_date") <= cut).select(
        KEY, "signup_date", "segment", "region", "loyalty_member"
    )

    o = orders.where((F.col("order_ts") >= start) & (F.col("order_ts") < end))
    days_before = F.datediff(cut, F.to_date("order_ts"))
    o_agg = o.groupBy(KEY).agg(
        F.count(F.lit(1)).alias("orders_lookback"),
        F.sum(F.when(days_before < 30, 1).otherwise(0)).alias("orders_30d"),
        F.sum(F.when(days_before < 90, 1).otherwise(0)).alias("orders_90d"),
        F.sum("amount").alias("monetary_lookback"),
        F.max("order_ts").alias("last_order_ts"),
        *[F.sum(F.when(F.col("channel") == c, 1).otherwise(0)).alias(f"n_{c}") for c in CHANNELS],
    )

    e = events.where((F.col("event_ts") >= start) & (F.col("event_ts") < end))
    e_agg = e.groupBy(KEY).agg(
        *[
            F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(f"n_{t}")
            for t in ("send", "open", "click", "conversion")
        ],
        F.max(F.when(F.col("event_type") == "open", F.col("event_ts"))).alias("last_open_ts"),
    )
    df = pop.join(o_agg, KEY, "left").join(e_agg, KEY, "left")
    if labelled:
        converted = (
            events.where(
                (F.col("event_ts") >= end)
                & (F.col("event_ts") < label_end)
                & (F.col("event_type") == "conversion")
            )
            .select(KEY)
            .distinct()
            .withColumn(LABEL, F.lit(1))
        )
        df = df.join(converted, KEY, "left")
    n = F.coalesce(F.col("orders_lookback"), F.lit(0))
    sends = F.coalesce(F.col("n_send"), F.lit(0))

    def ratio(num: Any, den: Any) -> Any:
        return F.when(den > 0, F.coalesce(num, F.lit(0)).cast("double") / den).otherwise(F.lit(0.0))

    def capped_days(ts_col: str) -> Any:
        return F.least(
            F.coalesce(F.datediff(cut, F.to_date(ts_col)), F.lit(lookback_days)),
            F.lit(lookback_days),
        )

    cols = {
        KEY: F.col(KEY),
        "cutoff_date": cut,
        "segment": F.col("segment"),
        "region": F.col("region"),
        "loyalty_member": F.col("loyalty_member").cast("int"),
        "tenure_days": F.datediff(cut, F.col("signup_date")).cast("int"),
        "recency_days": capped_days("last_order_ts").cast("int"),
        "orders_30d": F.coalesce(F.col("orders_30d"), F.lit(0)).cast("int"),
        "orders_90d": F.coalesce(F.col("orders_90d"), F.lit(0)).cast("int"),
        "orders_lookback": n.cast("int"),
        "monetary_lookback": F.round(F.coalesce(F.col("monetary_lookback"), F.lit(0.0)), 2).cast(
            "double"
        ),
        "avg_order_value": F.round(ratio(F.col("monetary_lookback"), n), 4),
        **{f"share_{c}": F.round(ratio(F.col(f"n_{c}"), n), 4) for c in CHANNELS},
        "sends_lookback": sends.cast("int"),
        "open_rate": F.round(ratio(F.col("n_open"), sends), 4),
        "click_rate": F.round(ratio(F.col("n_click"), sends), 4),
        "past_conversion_rate": F.round(ratio(F.col("n_conversion"), sends), 4),
        "days_since_last_open": capped_days("last_open_ts").cast("int"),
        **{f"segment_{s}": (F.col("segment") == s).cast("int") for s in SEGMENTS},
        **{f"region_{r}": (F.col("region") == r).cast("int") for r in REGIONS},
    }
    if labelled:
        cols[LABEL] = F.coalesce(F.col(LABEL), F.lit(0)).cast("int")
    return df.select(*[c.alias(name) for name, c in cols.items()])


def build_features_pandas(
    diners: Any,
    orders: Any,
    events: Any,
    cutoff: dt.date,
    *,
    lookback_days: int = 365,
    label_window_days: int = 14,
    labelled: bool = True,
) -> Any:
    """The same table with pandas (typed frames: dates/timestamps as datetime64)."""
    import numpy as np
    import pandas as pd

    w = window(cutoff, lookback_days, label_window_days)
    start, end, label_end = (
        pd.Timestamp(w[k]) for k in ("lookback_start", "cutoff_end", "label_end")
    )
    cut = pd.Timestamp(cutoff)

    pop = diners.loc[
        diners["signup_date"] <= cut, [KEY, "signup_date", "segment", "region", "loyalty_member"]
    ]
    o = orders.loc[(orders["order_ts"] >= start) & (orders["order_ts"] < end)]
    days_before = (cut - o["order_ts"].dt.normalize()).dt.days
    o = o.assign(
        _30=(days_before < 30).astype("int64"),
        _90=(days_before < 90).astype("int64"),
        **{f"n_{c}": (o["channel"] == c).astype("int64") for c in CHANNELS},
    )
    o_agg = o.groupby(KEY, sort=False).agg(
        orders_lookback=("amount", "size"),
        orders_30d=("_30", "sum"),
        orders_90d=("_90", "sum"),
        monetary_lookback=("amount", "sum"),
        last_order_ts=("order_ts", "max"),
        **{f"n_{c}": (f"n_{c}", "sum") for c in CHANNELS},
    )
    e = events.loc[(events["event_ts"] >= start) & (events["event_ts"] < end)]
    e = e.assign(
        **{
            f"n_{t}": (e["event_type"] == t).astype("int64")
            for t in ("send", "open", "click", "conversion")
        },
        _open_ts=e["event_ts"].where(e["event_type"] == "open"),
    )
    e_agg = e.groupby(KEY, sort=False).agg(
        **{f"n_{t}": (f"n_{t}", "sum") for t in ("send", "open", "click", "conversion")},
        last_open_ts=("_open_ts", "max"),
    )
    df = pop.merge(o_agg, left_on=KEY, right_index=True, how="left").merge(
        e_agg, left_on=KEY, right_index=True, how="left"
    )
    n = df["orders_lookback"].fillna(0).astype("int64")
    sends = df["n_send"].fillna(0).astype("int64")

    def ratio(num: Any, den: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = num.fillna(0).astype("float64") / den.astype("float64")
        return r.where(den > 0, 0.0)

    def capped_days(ts: Any) -> Any:
        d = (cut - ts.dt.normalize()).dt.days
        return d.fillna(lookback_days).clip(upper=lookback_days).astype("int32")

    out = pd.DataFrame(
        {
            KEY: df[KEY].astype(str),
            "cutoff_date": cut.date(),
            "segment": df["segment"],
            "region": df["region"],
            "loyalty_member": df["loyalty_member"].astype("int32"),
            "tenure_days": (cut - df["signup_date"]).dt.days.astype("int32"),
            "recency_days": capped_days(df["last_order_ts"]),
            "orders_30d": df["orders_30d"].fillna(0).astype("int32"),
            "orders_90d": df["orders_90d"].fillna(0).astype("int32"),
            "orders_lookback": n.astype("int32"),
            "monetary_lookback": df["monetary_lookback"].fillna(0.0).round(2),
            "avg_order_value": ratio(df["monetary_lookback"], n).round(4),
            **{f"share_{c}": ratio(df[f"n_{c}"], n).round(4) for c in CHANNELS},
            "sends_lookback": sends.astype("int32"),
            "open_rate": ratio(df["n_open"], sends).round(4),
            "click_rate": ratio(df["n_click"], sends).round(4),
            "past_conversion_rate": ratio(df["n_conversion"], sends).round(4),
            "days_since_last_open": capped_days(df["last_open_ts"]),
            **{f"segment_{s}": (df["segment"] == s).astype("int32") for s in SEGMENTS},
            **{f"region_{r}": (df["region"] == r).astype("int32") for r in REGIONS},
        }
    )
    if labelled:
        converted = events.loc[
            (events["event_ts"] >= end)
            & (events["event_ts"] < label_end)
            & (events["event_type"] == "conversion"),
            KEY,
        ].unique()
        out[LABEL] = df[KEY].isin(converted).astype("int32").to_numpy()
    return out.reset_index(drop=True)

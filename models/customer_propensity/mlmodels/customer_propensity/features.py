"""customer_propensity's features and label: one row per diner as of a cutoff.

The platform hands :func:`features` the raw frames already cut to the lookback before the cutoff
(``lookback_start <= ts < cutoff_end``; diners who signed up by the cutoff) and :func:`label` the
frames of the label window (``cutoff_end <= ts < label_end``), so nothing here can read the future
(``tests/images/steps/test_features.py`` proves it by rewriting the future and comparing).

:func:`build_features_pandas` computes the same table with pandas from unfiltered frames: the ingest
benchmark's baseline and a cross-check in the tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from mlmodels.restaurant_chain.tables import CHANNELS, REGIONS, SEGMENTS
from model_steps.features import window
from model_steps.model_api import ModelContext

KEY = "diner_id"
LABEL = "label"
EVENT_TYPES = ("send", "open", "click", "conversion")

# feature column -> type, in output order (the platform adds diner_id, cutoff_date and label)
FEATURE_SCHEMA: dict[str, str] = {
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
}
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c
    for c, t in FEATURE_SCHEMA.items()
    if t in ("int", "double") and not c.startswith(("segment_", "region_"))
)
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {"segment": SEGMENTS, "region": REGIONS}


def features(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """Spark: the point-in-time frames -> one row per diner with FEATURE_SCHEMA's columns.

    Three parts: each event table reduced to one row per diner (orders, email events), joined onto
    the diners who signed up by the cutoff, then the feature columns computed from those counts."""
    from pyspark.sql import functions as F

    assert ctx.window is not None
    cut = F.lit(ctx.window.cutoff).cast("date")
    pop = frames["diners"].select(KEY, "signup_date", "segment", "region", "loyalty_member")
    df = pop.join(_order_counts(frames["orders"], cut), KEY, "left").join(
        _email_counts(frames["email_events"]), KEY, "left"
    )
    cols = _feature_columns(cut, ctx.platform.data.lookback_days)
    return df.select(*[c.alias(name) for name, c in cols.items()])


def _order_counts(orders: Any, cut: Any) -> Any:
    """Spark: per diner, the orders in the lookback (all, last 30 and 90 days, per channel), their
    amount and the last order's time: what recency, frequency, value and channel mix come from."""
    from pyspark.sql import functions as F

    days_before = F.datediff(cut, F.to_date("order_ts"))
    return orders.groupBy(KEY).agg(
        F.count(F.lit(1)).alias("orders_lookback"),
        F.sum(F.when(days_before < 30, 1).otherwise(0)).alias("orders_30d"),
        F.sum(F.when(days_before < 90, 1).otherwise(0)).alias("orders_90d"),
        F.sum("amount").alias("monetary_lookback"),
        F.max("order_ts").alias("last_order_ts"),
        *[F.sum(F.when(F.col("channel") == c, 1).otherwise(0)).alias(f"n_{c}") for c in CHANNELS],
    )


def _email_counts(events: Any) -> Any:
    """Spark: per diner, the email events of each type in the lookback and the last open's time."""
    from pyspark.sql import functions as F

    return events.groupBy(KEY).agg(
        *[
            F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(f"n_{t}")
            for t in EVENT_TYPES
        ],
        F.max(F.when(F.col("event_type") == "open", F.col("event_ts"))).alias("last_open_ts"),
    )


def _feature_columns(cut: Any, lookback_days: int) -> dict[str, Any]:
    """Spark: the output columns (key first, then FEATURE_SCHEMA's order) over the joined counts; a
    diner without orders or emails in the lookback gets zero counts, rates and a capped recency."""
    from pyspark.sql import functions as F

    n = F.coalesce(F.col("orders_lookback"), F.lit(0))
    sends = F.coalesce(F.col("n_send"), F.lit(0))

    def ratio(num: Any, den: Any) -> Any:
        return F.when(den > 0, F.coalesce(num, F.lit(0)).cast("double") / den).otherwise(F.lit(0.0))

    def capped_days(ts_col: str) -> Any:
        return F.least(
            F.coalesce(F.datediff(cut, F.to_date(ts_col)), F.lit(lookback_days)),
            F.lit(lookback_days),
        )

    return {
        KEY: F.col(KEY),
        "segment": F.col("segment"),
        "region": F.col("region"),
        "loyalty_member": F.col("loyalty_member"),
        "tenure_days": F.datediff(cut, F.col("signup_date")),
        "recency_days": capped_days("last_order_ts"),
        "orders_30d": F.coalesce(F.col("orders_30d"), F.lit(0)),
        "orders_90d": F.coalesce(F.col("orders_90d"), F.lit(0)),
        "orders_lookback": n,
        "monetary_lookback": F.round(F.coalesce(F.col("monetary_lookback"), F.lit(0.0)), 2),
        "avg_order_value": F.round(ratio(F.col("monetary_lookback"), n), 4),
        **{f"share_{c}": F.round(ratio(F.col(f"n_{c}"), n), 4) for c in CHANNELS},
        "sends_lookback": sends,
        "open_rate": F.round(ratio(F.col("n_open"), sends), 4),
        "click_rate": F.round(ratio(F.col("n_click"), sends), 4),
        "past_conversion_rate": F.round(ratio(F.col("n_conversion"), sends), 4),
        "days_since_last_open": capped_days("last_open_ts"),
        **{f"segment_{s}": (F.col("segment") == s).cast("int") for s in SEGMENTS},
        **{f"region_{r}": (F.col("region") == r).cast("int") for r in REGIONS},
    }


def label(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """Spark: 1 for every diner with a conversion event in the label window (others get 0)."""
    from pyspark.sql import functions as F

    events = frames["email_events"]
    return (
        events.where(F.col("event_type") == "conversion")
        .select(KEY)
        .distinct()
        .withColumn(LABEL, F.lit(1))
    )


def clicks(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """Spark: every diner with a click event in the label window (a click-rewarded campaign)."""
    from pyspark.sql import functions as F

    events = frames["email_events"]
    return events.where(F.col("event_type") == "click").select(KEY).distinct()


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
    """The same table with pandas from unfiltered typed frames (dates/timestamps as datetime64):
    the platform's key, cutoff_date and label columns included, in the platform's order.

    The same parts as :func:`features` (per-diner counts of each event table, joined onto the
    diners, then the columns), each cutting its own frame to the window the platform would."""
    import pandas as pd

    w = window(cutoff, lookback_days, label_window_days)
    start, end, label_end = (pd.Timestamp(t) for t in (w.lookback_start, w.cutoff_end, w.label_end))
    cut = pd.Timestamp(cutoff)
    pop = diners.loc[
        diners["signup_date"] <= cut, [KEY, "signup_date", "segment", "region", "loyalty_member"]
    ]
    o_agg = _order_counts_pandas(
        orders.loc[(orders["order_ts"] >= start) & (orders["order_ts"] < end)], cut
    )
    e_agg = _email_counts_pandas(
        events.loc[(events["event_ts"] >= start) & (events["event_ts"] < end)]
    )
    df = pop.merge(o_agg, left_on=KEY, right_index=True, how="left").merge(
        e_agg, left_on=KEY, right_index=True, how="left"
    )
    out = _feature_frame_pandas(df, cut, lookback_days)
    if labelled:
        converted = events.loc[
            (events["event_ts"] >= end)
            & (events["event_ts"] < label_end)
            & (events["event_type"] == "conversion"),
            KEY,
        ].unique()
        out[LABEL] = df[KEY].isin(converted).astype("int32").to_numpy()
    return out.reset_index(drop=True)


def _order_counts_pandas(o: Any, cut: Any) -> Any:
    """pandas: :func:`_order_counts` on the lookback's orders (indexed by diner)."""
    days_before = (cut - o["order_ts"].dt.normalize()).dt.days
    o = o.assign(
        _30=(days_before < 30).astype("int64"),
        _90=(days_before < 90).astype("int64"),
        **{f"n_{c}": (o["channel"] == c).astype("int64") for c in CHANNELS},
    )
    return o.groupby(KEY, sort=False).agg(
        orders_lookback=("amount", "size"),
        orders_30d=("_30", "sum"),
        orders_90d=("_90", "sum"),
        monetary_lookback=("amount", "sum"),
        last_order_ts=("order_ts", "max"),
        **{f"n_{c}": (f"n_{c}", "sum") for c in CHANNELS},
    )


def _email_counts_pandas(e: Any) -> Any:
    """pandas: :func:`_email_counts` on the lookback's email events (indexed by diner)."""
    e = e.assign(
        **{f"n_{t}": (e["event_type"] == t).astype("int64") for t in EVENT_TYPES},
        _open_ts=e["event_ts"].where(e["event_type"] == "open"),
    )
    return e.groupby(KEY, sort=False).agg(
        **{f"n_{t}": (f"n_{t}", "sum") for t in EVENT_TYPES},
        last_open_ts=("_open_ts", "max"),
    )


def _feature_frame_pandas(df: Any, cut: Any, lookback_days: int) -> Any:
    """pandas: :func:`_feature_columns` with the platform's cutoff_date after the key, in the
    types the Spark table has (int32 counts, float64 rates)."""
    import numpy as np
    import pandas as pd

    n = df["orders_lookback"].fillna(0).astype("int64")
    sends = df["n_send"].fillna(0).astype("int64")

    def ratio(num: Any, den: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = num.fillna(0).astype("float64") / den.astype("float64")
        return r.where(den > 0, 0.0)

    def capped_days(ts: Any) -> Any:
        d = (cut - ts.dt.normalize()).dt.days
        return d.fillna(lookback_days).clip(upper=lookback_days).astype("int32")

    return pd.DataFrame(
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

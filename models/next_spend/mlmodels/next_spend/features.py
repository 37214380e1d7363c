"""next_spend's features and label: one row per diner, spend-oriented, from diners and orders only.

Features describe the spending rhythm before the cutoff (the platform has already cut the frames to
the lookback): spend and order counts over nested windows, the trend between the last two four-week
blocks, order value, active weeks, store breadth and the favourite channel. The label is the sum of
order amounts in the label window (diners without an order get 0, the platform's ``label_fill``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlmodels.restaurant_chain.tables import CHANNELS, REGIONS
from model_steps.model_api import ModelContext

KEY = "diner_id"
LABEL = "spend_next"
NO_CHANNEL = "none"  # a diner without orders in the lookback has no favourite channel

FEATURE_SCHEMA: dict[str, str] = {
    "region": "string",
    "favourite_channel": "string",
    "loyalty_member": "int",
    "tenure_days": "int",
    "days_since_last_order": "int",
    "orders_28d": "int",
    "orders_91d": "int",
    "orders_lookback": "int",
    "spend_7d": "double",
    "spend_28d": "double",
    "spend_prev_28d": "double",
    "spend_91d": "double",
    "spend_lookback": "double",
    "avg_order_value": "double",
    "max_order_value": "double",
    "active_weeks_91d": "int",
    "stores_visited": "int",
}
NUMERIC_FEATURES: tuple[str, ...] = tuple(c for c, t in FEATURE_SCHEMA.items() if t != "string")
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "favourite_channel": (*CHANNELS, NO_CHANNEL),
}


def features(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """Spark: the point-in-time frames -> one row per diner with FEATURE_SCHEMA's columns.

    Three parts: the orders reduced to one row per diner (spending rhythm, favourite channel),
    joined onto the diners, then the feature columns (a diner without orders gets zeros)."""
    from pyspark.sql import functions as F

    assert ctx.window is not None
    cut = F.lit(ctx.window.cutoff).cast("date")
    orders = frames["orders"].withColumn("age", F.datediff(cut, F.to_date("order_ts")))
    df = (
        frames["diners"]
        .select(KEY, "signup_date", "region", "loyalty_member")
        .join(_spending(orders), KEY, "left")
        .join(_favourite_channel(orders), KEY, "left")
    )
    cols = _feature_columns(cut, ctx.platform.data.lookback_days)
    return df.select(*[c.alias(name) for name, c in cols.items()])


def _spending(orders: Any) -> Any:
    """Per diner, over orders with their ``age`` (days before the cutoff): counts and spend in
    nested windows, the previous four weeks (for the trend), order values, active weeks, stores."""
    from pyspark.sql import functions as F

    def spend(lo: int, hi: int) -> Any:  # spend of orders placed lo..hi-1 days before the cutoff
        inside = (F.col("age") >= lo) & (F.col("age") < hi)
        return F.sum(F.when(inside, F.col("amount")).otherwise(0.0))

    return orders.groupBy(KEY).agg(
        F.count(F.lit(1)).alias("orders_lookback"),
        F.sum(F.when(F.col("age") < 28, 1).otherwise(0)).alias("orders_28d"),
        F.sum(F.when(F.col("age") < 91, 1).otherwise(0)).alias("orders_91d"),
        spend(0, 7).alias("spend_7d"),
        spend(0, 28).alias("spend_28d"),
        spend(28, 56).alias("spend_prev_28d"),
        spend(0, 91).alias("spend_91d"),
        F.sum("amount").alias("spend_lookback"),
        F.max("amount").alias("max_order_value"),
        F.min("age").alias("days_since_last_order"),
        F.count_distinct(F.when(F.col("age") < 91, F.floor(F.col("age") / 7))).alias(
            "active_weeks_91d"
        ),
        F.count_distinct("store_id").alias("stores_visited"),
    )


def _favourite_channel(orders: Any) -> Any:
    """Per diner, the channel of most orders (ties: the first by name, so the choice is stable)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_channel = orders.groupBy(KEY, "channel").agg(F.count(F.lit(1)).alias("n"))
    rank = Window.partitionBy(KEY).orderBy(F.col("n").desc(), F.col("channel"))
    return (
        by_channel.withColumn("r", F.row_number().over(rank))
        .where("r = 1")
        .select(KEY, F.col("channel").alias("favourite_channel"))
    )


def _feature_columns(cut: Any, lookback: int) -> dict[str, Any]:
    """The output columns (key first, then FEATURE_SCHEMA's order) over the joined aggregates: no
    order in the lookback means zero counts and spend, ``NO_CHANNEL`` and the lookback as recency."""
    from pyspark.sql import functions as F

    zero = F.lit(0)
    n = F.coalesce(F.col("orders_lookback"), zero)
    total = F.coalesce(F.col("spend_lookback"), F.lit(0.0))
    return {
        KEY: F.col(KEY),
        "region": F.col("region"),
        "favourite_channel": F.coalesce(F.col("favourite_channel"), F.lit(NO_CHANNEL)),
        "loyalty_member": F.col("loyalty_member"),
        "tenure_days": F.datediff(cut, F.col("signup_date")),
        "days_since_last_order": F.coalesce(F.col("days_since_last_order"), F.lit(lookback)),
        "orders_28d": F.coalesce(F.col("orders_28d"), zero),
        "orders_91d": F.coalesce(F.col("orders_91d"), zero),
        "orders_lookback": n,
        **{
            c: F.round(F.coalesce(F.col(c), F.lit(0.0)), 2)
            for c in ("spend_7d", "spend_28d", "spend_prev_28d", "spend_91d")
        },
        "spend_lookback": F.round(total, 2),
        "avg_order_value": F.round(F.when(n > 0, total / n).otherwise(F.lit(0.0)), 4),
        "max_order_value": F.coalesce(F.col("max_order_value"), F.lit(0.0)),
        "active_weeks_91d": F.coalesce(F.col("active_weeks_91d"), zero),
        "stores_visited": F.coalesce(F.col("stores_visited"), zero),
    }


def label(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """The diner's total order amount in the label window."""
    from pyspark.sql import functions as F

    return frames["orders"].groupBy(KEY).agg(F.round(F.sum("amount"), 2).alias(LABEL))

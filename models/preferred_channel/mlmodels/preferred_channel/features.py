"""preferred_channel's features and label: one row per diner, channel-oriented, from diners and
orders only.

Features describe how the diner ordered before the cutoff (the platform has already cut the frames
to the lookback): the orders per channel, the channel of most orders and of the latest order,
recency and volume, and who the diner is (segment, region, loyalty: the chain's segments favour
different channels). The label is the channel of most of the diner's orders in the label window
(ties: the first by name, so the choice is stable), as the index of ``CLASSES``; a diner without an
order in the window is the last class, ``none`` (the platform's ``label_fill``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlmodels.restaurant_chain.tables import CHANNELS, REGIONS, SEGMENTS
from model_steps.model_api import ModelContext

KEY = "diner_id"
LABEL = "next_channel"
NO_ORDER = "none"  # no order in the label window (a class), or none in the lookback (a feature)
CLASSES: tuple[str, ...] = (*CHANNELS, NO_ORDER)
NO_ORDER_INDEX = CLASSES.index(NO_ORDER)

FEATURE_SCHEMA: dict[str, str] = {
    "segment": "string",
    "region": "string",
    "favourite_channel": "string",
    "last_channel": "string",
    "loyalty_member": "int",
    "tenure_days": "int",
    "days_since_last_order": "int",
    "orders_lookback": "int",
    "orders_91d": "int",
    **{f"orders_{c}": "int" for c in CHANNELS},
}
NUMERIC_FEATURES: tuple[str, ...] = tuple(c for c, t in FEATURE_SCHEMA.items() if t != "string")
COUNTS: tuple[str, ...] = ("orders_lookback", "orders_91d", *(f"orders_{c}" for c in CHANNELS))
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {
    "segment": SEGMENTS,
    "region": REGIONS,
    "favourite_channel": CLASSES,
    "last_channel": CLASSES,
}


def features(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """Spark: the point-in-time frames -> one row per diner with FEATURE_SCHEMA's columns (a diner
    without orders in the lookback gets zero counts and the channel ``none``)."""
    from pyspark.sql import functions as F

    assert ctx.window is not None
    cut = F.lit(ctx.window.cutoff).cast("date")
    orders = frames["orders"].withColumn("age", F.datediff(cut, F.to_date("order_ts")))
    df = (
        frames["diners"]
        .select(KEY, "signup_date", "segment", "region", "loyalty_member")
        .join(_per_channel(orders), KEY, "left")
        .join(_top_channel(orders, F.col("n").desc(), "favourite_channel"), KEY, "left")
        .join(_top_channel(orders, F.col("order_ts").desc(), "last_channel"), KEY, "left")
    )
    zero, lookback = F.lit(0), ctx.platform.data.lookback_days
    cols = {
        KEY: F.col(KEY),
        "segment": F.col("segment"),
        "region": F.col("region"),
        "favourite_channel": F.coalesce(F.col("favourite_channel"), F.lit(NO_ORDER)),
        "last_channel": F.coalesce(F.col("last_channel"), F.lit(NO_ORDER)),
        "loyalty_member": F.coalesce(F.col("loyalty_member"), zero),
        "tenure_days": F.datediff(cut, F.col("signup_date")),
        "days_since_last_order": F.coalesce(F.col("days_since_last_order"), F.lit(lookback)),
        **{c: F.coalesce(F.col(c), zero) for c in COUNTS},
    }
    return df.select(*[c.alias(name) for name, c in cols.items()])


def _per_channel(orders: Any) -> Any:
    """Per diner: order counts (lookback, 91 days, each channel) and the days since the last."""
    from pyspark.sql import functions as F

    def count(condition: Any) -> Any:
        return F.sum(F.when(condition, 1).otherwise(0)).cast("int")

    return orders.groupBy(KEY).agg(
        F.count(F.lit(1)).cast("int").alias("orders_lookback"),
        count(F.col("age") < 91).alias("orders_91d"),
        F.min("age").cast("int").alias("days_since_last_order"),
        *[count(F.col("channel") == c).alias(f"orders_{c}") for c in CHANNELS],
    )


def _top_channel(orders: Any, order: Any, name: str) -> Any:
    """Per diner, the first channel by ``order`` over (channel, n orders, latest order_ts), ties
    by channel name: ``n desc`` is the channel of most orders, ``order_ts desc`` the latest's."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_channel = orders.groupBy(KEY, "channel").agg(
        F.count(F.lit(1)).alias("n"), F.max("order_ts").alias("order_ts")
    )
    rank = Window.partitionBy(KEY).orderBy(order, F.col("channel"))
    return (
        by_channel.withColumn("r", F.row_number().over(rank))
        .where("r = 1")
        .select(KEY, F.col("channel").alias(name))
    )


def label(frames: Mapping[str, Any], ctx: ModelContext) -> Any:
    """The index in CLASSES of the channel of most of the diner's orders in the label window."""
    from pyspark.sql import functions as F

    index = F.create_map(*[F.lit(x) for i, c in enumerate(CHANNELS) for x in (c, i)])
    top = _top_channel(frames["orders"], F.col("n").desc(), "channel")
    return top.select(KEY, index[F.col("channel")].cast("int").alias(LABEL))
